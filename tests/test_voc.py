"""Tests for yolojax.data.voc: annotation XML and image-set lists, with errors that name file and field."""
import numpy as np
import pytest

from yolojax.data import voc

GOOD_XML = """<annotation>
  <folder>VOC2007</folder>
  <filename>000005.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <object>
    <name>chair</name><pose>Rear</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox>
  </object>
  <object>
    <name>person</name><truncated>1</truncated><difficult>1</difficult>
    <bndbox><xmin>5</xmin><ymin>244</ymin><xmax>67</xmax><ymax>374</ymax></bndbox>
    <part><name>head</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></part>
  </object>
  <object>
    <name>diningtable</name>
    <bndbox><xmin>10.5</xmin><ymin>20</ymin><xmax>10.5</xmax><ymax>30</ymax></bndbox>
  </object>
</annotation>
"""


def _obj(name="cat", box=("1", "2", "30", "40"), extra=""):
    x0, y0, x1, y1 = box
    return (f"<object><name>{name}</name>{extra}<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
            f"<ymax>{y1}</ymax></bndbox></object>")


def _xml(tmp_path, *objects, size="<size><width>100</width><height>80</height></size>", name="a.xml"):
    path = tmp_path / name
    path.write_text(f"<annotation><filename>a.jpg</filename>{size}{''.join(objects)}</annotation>")
    return path


def test_parse_annotation_values(tmp_path):
    path = tmp_path / "000005.xml"
    path.write_text(GOOD_XML)
    ann = voc.parse_annotation(path)
    assert ann["filename"] == "000005.jpg" and ann["width"] == 500 and ann["height"] == 375
    np.testing.assert_array_equal(ann["boxes_px"], [[263, 211, 324, 339], [5, 244, 67, 374], [10.5, 20, 10.5, 30]])
    assert ann["boxes_px"].dtype == np.float32
    assert ann["classes"].tolist() == [8, 14, 10] and ann["classes"].dtype == np.int32  # chair, person, table
    assert ann["difficult"].tolist() == [False, True, False]  # absent <difficult> reads as 0 (VOC2012)
    assert ann["truncated"].tolist() == [False, True, False]


def test_parse_annotation_no_objects(tmp_path):
    ann = voc.parse_annotation(_xml(tmp_path))
    assert ann["boxes_px"].shape == (0, 4) and ann["classes"].shape == (0,) and ann["difficult"].dtype == bool


def test_malformed_xml_names_file(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<annotation><size><width>1</width></annotation>")
    with pytest.raises(ValueError, match=rf"{path}: malformed XML"):
        voc.parse_annotation(path)


def test_inverted_box_names_file_and_field(tmp_path):
    path = _xml(tmp_path, _obj("cat"), _obj("dog", box=("50", "2", "49", "40")))
    with pytest.raises(ValueError, match=rf"{path}: object 1 \(dog\) <bndbox>: xmax < xmin or ymax < ymin: "
                                         r"xmin=50 ymin=2 xmax=49 ymax=40"):
        voc.parse_annotation(path)
    path = _xml(tmp_path, _obj("dog", box=("1", "50", "2", "49")))
    with pytest.raises(ValueError, match="ymax < ymin"):
        voc.parse_annotation(path)


def test_unknown_class_names_file_and_value(tmp_path):
    path = _xml(tmp_path, _obj("cat"), _obj("unicorn"))
    with pytest.raises(ValueError, match=rf"{path}: object 1: <name> 'unicorn' is not a known class"):
        voc.parse_annotation(path)


@pytest.mark.parametrize("objects,size,message", [
    ([_obj(box=("1", "2", "x", "40"))], None, r"object 0 \(cat\) <bndbox>: field <xmax> is not a number: 'x'"),
    ([_obj(box=("1", "2", "", "40"))], None, r"object 0 \(cat\) <bndbox>: missing field <xmax>"),
    (["<object><name>cat</name></object>"], None, r"object 0 \(cat\): missing field <bndbox>"),
    (["<object><bndbox/></object>"], None, r"object 0: missing field <name>"),
    ([_obj(extra="<difficult>2</difficult>")], None, r"object 0 \(cat\): field <difficult> must be 0 or 1"),
    ([], "", r"missing field <size>"),
    ([], "<size><width>10</width></size>", r"<size>: missing field <height>"),
    ([], "<size><width>0</width><height>5</height></size>", r"<size>: width and height must be positive, got 0 x 5"),
])
def test_bad_fields_named(tmp_path, objects, size, message):
    kwargs = {} if size is None else {"size": size}
    path = _xml(tmp_path, *objects, **kwargs)
    with pytest.raises(ValueError, match=rf"{path}: {message}"):
        voc.parse_annotation(path)


def _devkit(tmp_path, layout="root"):
    year_dir = {"root": tmp_path / "VOCdevkit" / "VOC2007", "devkit": tmp_path / "VOC2007",
                "year": tmp_path}[layout]
    (year_dir / "ImageSets" / "Main").mkdir(parents=True)
    (year_dir / "Annotations").mkdir()
    return year_dir


@pytest.mark.parametrize("layout", ["root", "devkit", "year"])
def test_read_image_set_and_layouts(tmp_path, layout):
    year_dir = _devkit(tmp_path, layout)
    (year_dir / "ImageSets" / "Main" / "test.txt").write_text("000001\n000004\n\n000002\n")
    (year_dir / "ImageSets" / "Main" / "car_test.txt").write_text("000001 -1\n000004  1\n")
    assert voc.read_image_set(tmp_path, 2007, "test") == ["000001", "000004", "000002"]
    assert voc.read_image_set(tmp_path, "2007", "car_test") == ["000001", "000004"]
    assert voc.annotation_path(tmp_path, 2007, "000004") == str(year_dir / "Annotations" / "000004.xml")


def test_read_image_set_errors(tmp_path):
    year_dir = _devkit(tmp_path)
    path = year_dir / "ImageSets" / "Main" / "test.txt"
    path.write_text("000001\n000002\n000001\n")
    with pytest.raises(ValueError, match=rf"{path}:3: image id '000001' repeated \(first on line 1\)"):
        voc.read_image_set(tmp_path, 2007, "test")
    with pytest.raises(FileNotFoundError, match="image set 'val' not found"):
        voc.read_image_set(tmp_path, 2007, "val")
    with pytest.raises(FileNotFoundError, match="no VOC2012 devkit tree"):
        voc.read_image_set(tmp_path / "VOCdevkit", 2012, "test")


def test_iter_annotations(tmp_path):
    year_dir = _devkit(tmp_path)
    (year_dir / "ImageSets" / "Main" / "test.txt").write_text("b\na\n")
    _xml(year_dir / "Annotations", _obj("cat"), name="a.xml")
    _xml(year_dir / "Annotations", _obj("dog"), _obj("bus"), name="b.xml")
    got = [(i, ann["classes"].tolist()) for i, ann in voc.iter_annotations(tmp_path, 2007, "test")]
    assert got == [("b", [11, 5]), ("a", [7])]


def test_parse_annotation_any_names(tmp_path):
    # class_names=None accepts any name (for discovering a dataset's classes) and reports them in file order.
    path = tmp_path / "a.xml"
    path.write_text("<annotation><size><width>10</width><height>10</height></size>"
                    + "".join(f"<object><name>{n}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
                              f"<ymax>5</ymax></bndbox></object>" for n in ("traffic cone", "kite"))
                    + "</annotation>")
    ann = voc.parse_annotation(str(path), None)
    assert ann["names"] == ["traffic cone", "kite"]
    np.testing.assert_array_equal(ann["classes"], [-1, -1])
    ann = voc.parse_annotation(str(path), ("kite", "traffic cone"))
    np.testing.assert_array_equal(ann["classes"], [1, 0])
