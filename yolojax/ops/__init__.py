"""Pure array functions: box conventions, anchor k-means, target encoding, the YOLOv1/YOLOv2 losses, decoding
and fixed-size NMS. numpy in, numpy out; jax in, jax out (the losses and decoders are jit-able)."""
