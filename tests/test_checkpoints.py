"""yolojax.training.checkpoints: round trip, refusing non-finite states, healing from damaged steps, variables only.

Small trees of a few arrays on one CPU device. A template workdir with two checkpoints (steps 1 and 2) is
written once per module and copied for each test that damages it.
"""

import logging
import os
import shutil
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from yolojax.training import checkpoints as ckpt

MODEL = {"name": "tiny", "num_classes": 3}


class AdamLike(NamedTuple):  # stands in for an optax state: a namedtuple with int and float leaves
    count: jax.Array
    mu: dict


class Empty(NamedTuple):  # like optax.EmptyState: a node without leaves
    pass


def make_tree(step: int) -> dict:
    """A training-state-like dict: nested params, batch_stats, a namedtuple opt_state, uint32 rng, ints.
    'big' holds 4,096 random floats (incompressible, so it alone fills the largest ocdbt data file)."""
    rng = np.random.default_rng(step)
    params = {"conv1": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32),
                        "bias": jnp.full((4,), 0.5 * step, jnp.float32)},
              "big": jnp.asarray(rng.normal(size=(64, 64)), jnp.float32),
              "head": {"w": jnp.asarray(rng.normal(size=(4, 5)), jnp.bfloat16)}}
    return {"step": jnp.asarray(step, jnp.int32),
            "params": params,
            "batch_stats": {"bn": {"mean": jnp.arange(4, dtype=jnp.float32) * step,
                                   "var": jnp.ones((4,), jnp.float32)}},
            "opt_state": (AdamLike(count=jnp.asarray(7 * step, jnp.int32),
                                   mu=jax.tree.map(jnp.zeros_like, params)), Empty()),
            "rng": jnp.asarray([12345, 4000000000 + step], jnp.uint32),
            "seen": jnp.asarray(64 * step, jnp.int32)}


def abstract(tree):
    sharding = NamedSharding(Mesh(np.array(jax.devices()[:1]), ("data",)), P())
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def assert_trees_equal(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape
        assert g.tobytes() == w.tobytes()  # bit-exact


def data_files(step_dir):
    """The ocdbt data files of a step's state item, largest first."""
    d = os.path.join(step_dir, "state", "ocdbt.process_0", "d")
    return sorted((os.path.join(d, f) for f in os.listdir(d)), key=os.path.getsize, reverse=True)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("template"))
    mngr = ckpt.make_manager(wd, async_save=False)
    for step in (1, 2):
        assert ckpt.save(mngr, step, make_tree(step), meta={"model": MODEL}, data_state={"step": step},
                         metrics={"map": 0.25 * step})
    mngr.close()
    return wd


@pytest.fixture
def workdir(template, tmp_path):
    wd = str(tmp_path / "wd")
    shutil.copytree(template, wd)
    return wd


@pytest.fixture
def mngr(workdir):
    m = ckpt.make_manager(workdir, async_save=False)
    yield m
    m.close()


def damage_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.pathname == ckpt.__file__ and r.levelno >= logging.WARNING]


# ----------------------------------------------------------------------------------------------------------


def test_round_trip_bit_exact(mngr):
    restored = ckpt.restore(mngr, abstract(make_tree(2)))
    assert restored.step == 2 and restored.skipped == []
    assert_trees_equal(restored.tree, make_tree(2))
    assert isinstance(restored.tree["opt_state"][0], AdamLike) and restored.tree["opt_state"][1] == Empty()
    assert restored.tree["rng"].dtype == jnp.uint32 and int(restored.tree["rng"][1]) == 4000000002
    assert all(isinstance(x, jax.Array) and x.sharding.is_fully_replicated for x in jax.tree.leaves(restored.tree))
    assert restored.data_state == {"step": 2}
    assert restored.meta["model"] == MODEL and restored.meta["step"] == 2
    assert restored.meta["metrics"] == {"map": 0.5}
    assert restored.meta["state_keys"] == ["batch_stats", "opt_state", "params", "rng", "seen", "step"]
    # one checksum per leaf, keyed by its path
    assert sorted(restored.meta["checksums"]) == sorted(ckpt._flat(make_tree(2)))
    assert restored.meta["checksums"]["params/conv1/kernel"].startswith("float32:")

    older = ckpt.restore(mngr, abstract(make_tree(1)), step=1)
    assert older.step == 1
    assert_trees_equal(older.tree, make_tree(1))


def _delete_data_file(step_dir):
    os.remove(data_files(step_dir)[0])


def _truncate_data_file(step_dir):
    path = data_files(step_dir)[0]
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _flip_64_bytes(step_dir):
    path = data_files(step_dir)[0]
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    open(path, "wb").write(bytes(data))


def _remove_state_metadata(step_dir):
    os.remove(os.path.join(step_dir, "state", "_METADATA"))


def _truncate_manifest(step_dir):
    path = os.path.join(step_dir, "state", "manifest.ocdbt")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _remove_meta_dir(step_dir):
    shutil.rmtree(os.path.join(step_dir, "meta"))


DAMAGES = {"deleted_data_file": _delete_data_file, "truncated_data_file": _truncate_data_file,
           "flipped_bytes": _flip_64_bytes, "missing_METADATA": _remove_state_metadata,
           "truncated_manifest": _truncate_manifest, "missing_meta_dir": _remove_meta_dir}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_latest_falls_back_and_is_moved_aside(workdir, mngr, damage, caplog):
    step_dir = os.path.join(workdir, "checkpoints", "2")
    DAMAGES[damage](step_dir)
    caplog.set_level(logging.WARNING, logger="absl")

    restored = ckpt.restore(mngr, abstract(make_tree(1)))

    assert restored.step == 1
    assert_trees_equal(restored.tree, make_tree(1))
    assert restored.data_state == {"step": 1}
    assert [s for s, _ in restored.skipped] == [2]
    lines = damage_lines(caplog)
    assert len(lines) == 1 and "\n" not in lines[0]
    moved = os.path.join(workdir, "checkpoints_damaged", "2")
    assert lines[0].startswith(f"checkpoint step 2 in {os.path.join(workdir, 'checkpoints')} is damaged (")
    assert lines[0].endswith(f"moved to {moved}; trying step 1")
    assert os.path.isdir(moved) and not os.path.exists(step_dir)
    assert list(mngr.all_steps()) == [1]
    if damage == "flipped_bytes":
        assert "checksum mismatch in leaf params/big" in lines[0]
    # the next restore finds step 1 directly
    caplog.clear()
    assert ckpt.restore(mngr, abstract(make_tree(1))).skipped == [] and damage_lines(caplog) == []


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_flipped_bytes_pass_orbax_unnoticed(workdir):
    """What the checksums are for: orbax itself reads the flipped data without an error."""
    step_dir = os.path.join(workdir, "checkpoints", "2")
    _flip_64_bytes(step_dir)
    handler = ocp.PyTreeCheckpointHandler()
    try:
        tree = handler.restore(epath.Path(step_dir) / "state")
    finally:
        handler.close()
    big = np.asarray(tree["params"]["big"])
    assert big.shape == (64, 64) and not np.array_equal(big, np.asarray(make_tree(2)["params"]["big"]))


def test_nonfinite_state_is_never_written(mngr, workdir):
    tree = make_tree(3)
    tree["params"]["conv1"]["bias"] = tree["params"]["conv1"]["bias"].at[2].set(jnp.nan)
    assert ckpt.first_nonfinite(tree) == "params/conv1/bias"
    with pytest.raises(ckpt.NonFiniteStateError, match=r"step 3 .* leaf params/conv1/bias ") as info:
        ckpt.save(mngr, 3, tree, meta={"model": MODEL}, data_state={"step": 3})
    assert "\n" not in str(info.value)
    mngr.wait_until_finished()
    assert list(mngr.all_steps()) == [1, 2]
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2"]


def test_first_nonfinite():
    tree = make_tree(1)
    assert ckpt.first_nonfinite(tree) is None
    tree["params"]["head"]["w"] = tree["params"]["head"]["w"].at[0, 0].set(jnp.inf)  # bfloat16
    tree["rng"] = jnp.asarray([0, 0xFFFFFFFF], jnp.uint32)  # integers are never "non-finite"
    assert ckpt.first_nonfinite(tree) == "params/head/w"
    assert ckpt.first_nonfinite({"a": np.array([1.0, -np.inf]), "b": np.float32(np.nan)}) == "a"


def test_explicit_damaged_step_is_an_error(workdir, mngr):
    _truncate_data_file(os.path.join(workdir, "checkpoints", "2"))
    with pytest.raises(ckpt.CheckpointError, match=r"^checkpoint step 2 in .* is damaged \(") as info:
        ckpt.restore(mngr, abstract(make_tree(2)), step=2)
    assert "\n" not in str(info.value)
    assert list(mngr.all_steps()) == [1, 2]  # left in place
    assert not os.path.exists(os.path.join(workdir, "checkpoints_damaged"))
    with pytest.raises(ckpt.CheckpointError, match=r"no checkpoint for step 5"):
        ckpt.restore(mngr, abstract(make_tree(2)), step=5)


def test_all_damaged(workdir, mngr, caplog):
    caplog.set_level(logging.WARNING, logger="absl")
    for step in (1, 2):
        _remove_state_metadata(os.path.join(workdir, "checkpoints", str(step)))
    with pytest.raises(ckpt.CheckpointError, match=r"every checkpoint in .* is damaged \(steps \[2, 1\]") as info:
        ckpt.restore(mngr, abstract(make_tree(1)))
    assert "\n" not in str(info.value)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints_damaged"))) == ["1", "2"]
    lines = damage_lines(caplog)
    assert len(lines) == 2 and lines[0].endswith("trying step 1") and lines[1].endswith("no older checkpoint")
    assert ckpt.restore(mngr, abstract(make_tree(1))) is None  # nothing left


def test_no_checkpoint_returns_none(tmp_path):
    mngr = ckpt.make_manager(str(tmp_path), async_save=False)
    assert ckpt.restore(mngr, abstract(make_tree(1))) is None
    mngr.close()


def test_check_meta_mismatch_propagates_and_moves_nothing(workdir, mngr):
    seen = []

    def check_meta(meta):
        seen.append(meta["step"])
        raise ckpt.CheckpointMismatchError(f"another model: {meta['model']['name']}")

    with pytest.raises(ckpt.CheckpointMismatchError, match="^another model: tiny$"):
        ckpt.restore(mngr, abstract(make_tree(2)), check_meta=check_meta)
    assert seen == [2]
    assert list(mngr.all_steps()) == [1, 2]
    assert not os.path.exists(os.path.join(workdir, "checkpoints_damaged"))


def test_differently_shaped_target_is_a_mismatch_not_damage(workdir, mngr):
    target = abstract(make_tree(2))
    target["params"]["conv1"]["bias"] = jax.ShapeDtypeStruct((8,), jnp.float32)
    with pytest.raises(ckpt.CheckpointMismatchError, match=r"params/conv1/bias has shape \(4,\) in the checkpoint"):
        ckpt.restore(mngr, target)
    del target["params"]["conv1"]["bias"]
    with pytest.raises(ckpt.CheckpointMismatchError, match=r"checkpoint leaf params/conv1/bias is not in the target"):
        ckpt.restore(mngr, target)
    assert list(mngr.all_steps()) == [1, 2]


def test_same_step_twice_keeps_the_first(mngr):
    assert ckpt.save(mngr, 2, make_tree(5), meta={"model": MODEL}, data_state={"step": 5}) is False
    restored = ckpt.restore(mngr, abstract(make_tree(2)))
    assert_trees_equal(restored.tree, make_tree(2))


def test_best_checkpoint_is_preserved(tmp_path):
    mngr = ckpt.make_manager(str(tmp_path), keep=1, async_save=False)
    for step, m in ((1, 0.9), (2, 0.1), (3, 0.2)):
        ckpt.save(mngr, step, {"x": jnp.ones(2) * step}, meta={}, data_state=None, metrics={"map": np.float32(m)})
    ckpt.save(mngr, 4, {"x": jnp.ones(2) * 4}, meta={}, data_state=None)
    assert list(mngr.all_steps()) == [1, 4]
    mngr.close()


def test_async_save_then_restore(tmp_path):
    mngr = ckpt.make_manager(str(tmp_path), async_save=True)
    assert ckpt.save(mngr, 7, make_tree(7), meta={"model": MODEL}, data_state={"step": 7}, metrics={"map": 0.5})
    mngr.wait_until_finished()
    restored = ckpt.restore(mngr, abstract(make_tree(7)))
    assert restored.step == 7 and restored.data_state == {"step": 7}
    assert_trees_equal(restored.tree, make_tree(7))
    mngr.close()


def test_reads_checkpoints_written_before_checksums(tmp_path):
    """The layout written by the training code before this module (no checksums / state_keys in meta)."""
    tree = make_tree(4)
    mngr = ocp.CheckpointManager(str(tmp_path / "checkpoints"), item_names=("state", "meta", "data"),
                                 options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False))
    mngr.save(4, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                         meta=ocp.args.JsonSave({"model": MODEL, "step": 4, "metrics": {}}),
                                         data=ocp.args.JsonSave({"state": {"step": 4}})))
    mngr.close()
    mngr = ckpt.make_manager(str(tmp_path), async_save=False)
    restored = ckpt.restore(mngr, abstract(tree))
    mngr.close()
    assert restored.step == 4 and restored.data_state == {"step": 4}
    assert_trees_equal(restored.tree, tree)
    variables, meta = ckpt.restore_variables(str(tmp_path))
    assert_trees_equal(variables, _variables(tree)) and meta["model"] == MODEL


# ----------------------------------------------------------------------------------------------------------
# Variables only


def _variables(tree):
    return {"params": tree["params"], "batch_stats": tree["batch_stats"]}


def test_restore_variables_from_workdir_and_step_dir(workdir):
    variables, meta = ckpt.restore_variables(workdir)
    assert meta["step"] == 2 and meta["model"] == MODEL
    assert_trees_equal(variables, _variables(make_tree(2)))
    assert all(type(x) is np.ndarray for x in jax.tree.leaves(variables))

    variables, meta = ckpt.restore_variables(os.path.join(workdir, "checkpoints", "1"))
    assert meta["step"] == 1
    assert_trees_equal(variables, _variables(make_tree(1)))
    variables, _ = ckpt.restore_variables(workdir, step=1)
    assert_trees_equal(variables, _variables(make_tree(1)))

    def another_model(meta):
        raise ckpt.CheckpointMismatchError(f"step {meta['step']} is another model")

    with pytest.raises(ckpt.CheckpointMismatchError, match="^step 2 is another model$"):
        ckpt.restore_variables(workdir, check_meta=another_model)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2"]


def test_restore_variables_reads_no_opt_state(workdir, monkeypatch):
    """restore_variables needs no target and asks orbax for the params/batch_stats arrays only (spied on
    the numpy type handler it restores through)."""
    asked = []
    deserialize = ocp.type_handlers.NumpyHandler.deserialize

    async def spy(self, infos, args=None):
        asked.extend(info.name for info in infos)
        return await deserialize(self, infos, args)

    monkeypatch.setattr(ocp.type_handlers.NumpyHandler, "deserialize", spy)
    variables, _ = ckpt.restore_variables(workdir)
    assert_trees_equal(variables, _variables(make_tree(2)))
    assert sorted(asked) == sorted(p.replace("/", ".") for p in ckpt._flat(_variables(make_tree(2))))


def test_restore_variables_heals_a_workdir(workdir, caplog):
    caplog.set_level(logging.WARNING, logger="absl")
    _flip_64_bytes(os.path.join(workdir, "checkpoints", "2"))
    with pytest.raises(ckpt.CheckpointError, match=r"checkpoint step 2 .* is damaged \(checksum mismatch"):
        ckpt.restore_variables(os.path.join(workdir, "checkpoints", "2"))
    variables, meta = ckpt.restore_variables(workdir)
    assert meta["step"] == 1
    assert_trees_equal(variables, _variables(make_tree(1)))
    assert len(damage_lines(caplog)) == 1
    assert os.path.isdir(os.path.join(workdir, "checkpoints_damaged", "2"))


def test_restore_variables_errors(tmp_path, workdir):
    with pytest.raises(ckpt.CheckpointError, match=r"^checkpoint or workdir not found: .*nope$"):
        ckpt.restore_variables(str(tmp_path / "nope"))
    with pytest.raises(ckpt.CheckpointError, match=r"not a yolojax workdir"):
        ckpt.restore_variables(str(tmp_path))
    os.makedirs(tmp_path / "empty" / "checkpoints")
    with pytest.raises(ckpt.CheckpointError, match=r"holds no checkpoint$"):
        ckpt.restore_variables(str(tmp_path / "empty"))
    with pytest.raises(ckpt.CheckpointError, match=r"no checkpoint for step 9"):
        ckpt.restore_variables(workdir, step=9)


def test_write_variables_twice_and_read_back(tmp_path):
    wd = str(tmp_path / "converted")
    first = _variables(make_tree(1))
    second = {"params": make_tree(2)["params"]}  # no batch_stats
    path = ckpt.write_variables(wd, first, meta={"model": MODEL, "seen": 640})
    assert path == os.path.join(wd, "checkpoints", "0")
    variables, meta = ckpt.restore_variables(wd)
    assert_trees_equal(variables, first)
    assert meta["seen"] == 640 and meta["state_keys"] == ["batch_stats", "params", "step"]

    ckpt.write_variables(wd, second, meta={"model": MODEL})  # re-run into the same workdir
    variables, _ = ckpt.restore_variables(path)
    assert_trees_equal(variables, second)
    assert sorted(os.listdir(wd)) == ["checkpoints"]

    # a training restore gets the three keys it has; the caller keeps its own opt_state, rng, seen
    target = abstract(make_tree(2))
    target["batch_stats"] = {}  # the model of `second` has no batch norm
    mngr = ckpt.make_manager(wd, async_save=False)
    restored = ckpt.restore(mngr, target)
    with pytest.raises(ckpt.CheckpointMismatchError, match="leaf batch_stats/bn/mean is not in the checkpoint"):
        ckpt.restore(mngr, abstract(make_tree(2)))
    mngr.close()
    assert sorted(restored.tree) == ["batch_stats", "params", "step"] and restored.data_state is None
    assert_trees_equal(restored.tree["params"], second["params"]) and int(restored.tree["step"]) == 0


def test_write_variables_refusals(tmp_path, workdir):
    wd = str(tmp_path / "converted")
    good = _variables(make_tree(1))
    ckpt.write_variables(wd, good, meta={"model": MODEL})
    with pytest.raises(ckpt.CheckpointError, match=r"already holds checkpoint step 0 \(overwrite=False\)"):
        ckpt.write_variables(wd, good, meta={}, overwrite=False)
    bad = {"params": {"w": np.array([1.0, np.nan], np.float32)}}
    with pytest.raises(ckpt.NonFiniteStateError, match="params/w"):
        ckpt.write_variables(wd, bad, meta={})
    assert_trees_equal(ckpt.restore_variables(wd)[0], good)  # the old one is still there
    assert sorted(os.listdir(wd)) == ["checkpoints"]
    with pytest.raises(ckpt.CheckpointError, match=r"already holds checkpoints of steps \[1, 2\]"):
        ckpt.write_variables(workdir, good, meta={})
    with pytest.raises(ckpt.CheckpointError, match=r"variables must be"):
        ckpt.write_variables(wd, {"params": {}, "opt_state": {}}, meta={})
