import os

import pytest

from voxmesh.pipelines.build.inputs import (
    InputItem,
    PartTask,
    SplitFractions,
    assign_splits,
    deal_parts,
    discover,
    expected_frames,
    identify,
    plan_parts,
    split_of,
    stable_unit,
)
from voxmesh.schemas import is_valid_key, make_key, sanitize_id


def test_sanitize_id_removes_everything_that_could_steer_a_path():
    assert sanitize_id("../../etc/passwd") == "etc-passwd"
    assert sanitize_id("_-5cMyJ7Y2s") == "5cMyJ7Y2s"
    assert sanitize_id("a b.c_d") == "a-b-c-d"
    assert len(sanitize_id("x" * 500)) == 64
    with pytest.raises(ValueError, match="no letters or digits"):
        sanitize_id("../..")


def test_keys_have_no_dots_and_a_fixed_shape():
    key = make_key("id00017", "01dfn2spqyE", "00001", 0, 3)
    assert key == "id00017_01dfn2spqyE_00001_000_003" and is_valid_key(key)
    assert not is_valid_key("id00017_vid.mp4_00001_000_003")
    assert not is_valid_key(key + "\n") and not is_valid_key("../" + key)
    with pytest.raises(ValueError):
        make_key("a.b", "v", "u", 0, 0)


def test_ids_follow_the_voxceleb2_layout_and_duplicates_fail(tmp_path):
    for rel in ("dev/mp4/id00017/01dfn2spqyE/00001.mp4", "dev/mp4/id00017/01dfn2spqyE/00002.mp4",
                "other/single.mp4", "dev/mp4/id00017/01dfn2spqyE/00001.MP4", "odd/.../__.mp4"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    items, failures = identify(discover(str(tmp_path)))
    assert [i.input_id for i in items] == ["id00017/01dfn2spqyE/00001", "id00017/01dfn2spqyE/00002",
                                           "other/single/0"]
    assert sorted(f.reason for f in failures) == ["bad_id", "duplicate_id"]
    assert all(os.path.isabs(f.source_uri) for f in failures)


def test_linked_folders_are_searched_once_each_and_a_link_loop_ends(tmp_path):
    """Speaker folders linked in from elsewhere are inputs as a glob would find them; a folder
    linked twice gives its video once, and a link back to the root ends."""
    elsewhere = tmp_path / "elsewhere" / "spk2" / "vid"
    elsewhere.mkdir(parents=True)
    (elsewhere / "00001.mp4").write_bytes(b"x")
    root = tmp_path / "in"
    (root / "spk1" / "vid").mkdir(parents=True)
    (root / "spk1" / "vid" / "00001.mp4").write_bytes(b"x")
    (root / "spk2").symlink_to(tmp_path / "elsewhere" / "spk2")
    (root / "spk2-again").symlink_to(tmp_path / "elsewhere" / "spk2")
    (root / "spk1" / "loop").symlink_to(root)
    items, failures = identify(discover(str(root)))
    assert [i.input_id for i in items] == ["spk1/vid/00001", "spk2/vid/00001"] and failures == []


def test_glob_discovery_takes_ids_below_the_glob_root(tmp_path):
    (tmp_path / "spk" / "vid").mkdir(parents=True)
    (tmp_path / "spk" / "vid" / "00001.mp4").write_bytes(b"x")
    raws = discover(str(tmp_path / "**" / "*.mp4"))
    assert len(raws) == 1 and identify(raws)[0][0].input_id == "spk/vid/00001"


def test_splits_are_speaker_disjoint_stable_and_parts_cover_every_input(tmp_path):
    items = [InputItem(f"/v/{s}/{u}.mp4", f"id{s:05d}", "vid", f"{u:05d}") for s in range(50) for u in range(3)]
    fractions = SplitFractions(0.8, 0.1, 0.1)
    splits, failures = assign_splits(items, fractions)
    assert failures == []
    tasks = plan_parts(items, splits, inputs_per_part=7)
    assert tasks == plan_parts(list(reversed(items)), splits, inputs_per_part=7)
    assigned = [i for t in tasks for i in t.items]
    assert sorted(assigned, key=lambda i: i.uri) == sorted(items, key=lambda i: i.uri)
    split_of_speaker = {}
    for task in tasks:
        assert list(task.items) == sorted(task.items, key=lambda i: i.key_order)
        for item in task.items:
            assert split_of_speaker.setdefault(item.speaker, task.split) == task.split
    assert {split_of("id00001", fractions)} == {split_of("id00001", fractions)}
    assert set(split_of_speaker.values()) == {"train", "val", "test"}
    with pytest.raises(ValueError):
        SplitFractions(0.5, 0.1, 0.1)


def test_listing_gives_ids_and_source_splits_and_refuses_what_it_cannot_read(tmp_path):
    listing = tmp_path / "inputs.csv"
    listing.write_text("uri,speaker,video,utterance,split\n"
                       "a/one.mp4,../../etc,v1,u1,test\n"
                       "a/one.mp4,../../etc,v1,u1,test\n"        # the same URI twice: one input
                       "/abs/two.mp4,spk2,,,train\n"             # ids from the path where blank
                       "ftp9://host/x.mp4,spk3,v,u,\n"           # a scheme no file system reads
                       "b/three.mp4,spk4,v,u,holdout\n"          # an unknown split
                       "b/four.mp4,spk2,v4,u4,test\n")           # spk2 listed in two splits
    raws = discover(str(listing))
    assert len(raws) == 5
    items, failures = identify(raws)
    assert {f.reason for f in failures} == {"unsupported_uri", "bad_id"}
    by_uri = {i.uri: i for i in items}
    one = by_uri[str(tmp_path / "a" / "one.mp4")]
    assert (one.input_id, one.split) == ("etc/v1/u1", "test")
    assert by_uri["/abs/two.mp4"].input_id == "spk2/two/0"
    splits, split_failures = assign_splits(items, SplitFractions())
    assert splits == {"etc": "test"}
    assert sorted(f.source_uri for f in split_failures) == ["/abs/two.mp4", str(tmp_path / "b" / "four.mp4")]


def test_a_listings_missing_ids_come_from_each_files_own_path_whatever_else_is_listed(tmp_path):
    """As the README says: the last three parts of the path, VoxCeleb2's speaker/video/utterance,
    so that a file's ids (and its speaker's split) do not move with the other rows."""
    rows = ["/data/vox2/id0001/vidA/00001.mp4", "/data/vox2/id0001/vidB/00002.mp4", "/data/talks/clip7.mp4"]
    ids = {}
    for index, listed in enumerate((rows, rows[:1], rows[1:])):
        listing = tmp_path / f"inputs{index}.csv"
        listing.write_text("uri\n" + "".join(f"{row}\n" for row in listed))
        items, failures = identify(discover(str(listing)))
        assert failures == []
        for item in items:
            assert ids.setdefault(item.uri, item.input_id) == item.input_id
    assert ids == {rows[0]: "id0001/vidA/00001", rows[1]: "id0001/vidB/00002", rows[2]: "data/talks/clip7"}


def test_a_file_name_that_is_not_utf8_is_a_bad_id_named_readably_not_a_crash_at_the_tables(tmp_path):
    """os.walk gives such a name with surrogate escapes, which no Parquet table or shard can hold:
    the input becomes a failure whose text shows the name's bytes, and the tables write."""
    from voxmesh.schemas.tables import write_failures
    (tmp_path / "spk" / "vid").mkdir(parents=True)
    (tmp_path / "spk" / "vid" / "00001.mp4").write_bytes(b"x")
    (tmp_path / "spk" / "vid" / os.fsdecode(b"caf\xe9.mp4")).write_bytes(b"x")
    items, failures = identify(discover(str(tmp_path)))
    assert [i.input_id for i in items] == ["spk/vid/00001"]
    assert [(f.reason, f.source_uri.endswith("caf\\xe9.mp4")) for f in failures] == [("bad_id", True)]
    assert "is not UTF-8; rename the file" in failures[0].detail
    write_failures(failures, str(tmp_path / "failures.parquet"))


def test_a_listing_row_without_a_file_name_is_a_bad_id(tmp_path):
    listing = tmp_path / "inputs.csv"
    listing.write_text("uri\n/\ns3://\nok/a.mp4\n")
    items, failures = identify(discover(str(listing)))
    assert [i.uri for i in items] == [str(tmp_path / "ok" / "a.mp4")]
    assert [f.reason for f in failures] == ["bad_id", "bad_id"]


@pytest.mark.parametrize("duration", ["inf", "-3"])  # (CSV readers take "nan" for an empty cell)
def test_a_listed_duration_that_is_no_length_is_refused_with_the_file_named(tmp_path, duration):
    listing = tmp_path / "inputs.csv"
    listing.write_text(f"uri,duration\na.mp4,2.5\nb.mp4,{duration}\n")
    with pytest.raises(ValueError, match=r"inputs.csv: the duration of .*b.mp4 is .*give seconds as a number >= 0"):
        discover(str(listing))


def test_listing_without_a_uri_column_is_refused_with_the_file_named(tmp_path):
    listing = tmp_path / "bad.csv"
    listing.write_text("path\nx.mp4\n")
    with pytest.raises(ValueError, match="bad.csv: a listing needs a 'uri' column"):
        discover(str(listing))


def test_a_run_of_at_least_as_many_inputs_as_workers_plans_a_part_per_worker():
    items = [InputItem(f"/v/{k}.mp4", f"id{k}", "vid", "1") for k in range(6)]
    splits = {item.speaker: "train" for item in items}
    assert len(plan_parts(items, splits, inputs_per_part=8)) == 1
    for workers in (2, 4, 6):
        tasks = plan_parts(items, splits, inputs_per_part=8, min_parts=workers)
        assert len(tasks) >= workers and sorted(i.uri for t in tasks for i in t.items) == sorted(i.uri for i in items)
        assert {t.group for t in tasks} == {0}  # one group: packing keeps them together
    assert len(plan_parts(items[:3], splits, inputs_per_part=8, min_parts=4)) == 3  # one input per part at most
    # parts by expected frames: the first input (in the plan's hash order) is long, so a cut in
    # two gives it a part of its own (by count, it would share one with two others)
    first = min(items, key=lambda i: stable_unit(f"shard:{i.key_prefix}"))
    frames = {item.uri: 100 for item in items} | {first.uri: 1000}
    assert len(plan_parts(items, splits, inputs_per_part=8, frames_per_part=300, frames=frames)) == 3
    tasks = plan_parts(items, splits, inputs_per_part=8, frames_per_part=10_000, min_parts=2, frames=frames)
    assert [[i.uri for i in t.items] for t in tasks if len(t.items) == 1] == [[first.uri]] and len(tasks) == 2


def test_the_frames_of_an_input_come_from_the_listing_or_its_header(media_dir, tmp_path):
    listing = tmp_path / "list.csv"
    clip = os.path.join(media_dir, "hdtf_aoc_512_25fps.mp4")
    listing.write_text(f"uri,duration\n{clip},\n/remote/x.mp4,3.0\n")
    frames = expected_frames(discover(str(listing)))
    assert frames == {clip: 202, "/remote/x.mp4": 75}  # the header says 8.064 s


def test_inputs_in_a_part_come_in_the_order_of_their_sample_keys():
    items = [InputItem("/a", "id1", "v", "1-2"), InputItem("/b", "id1", "v", "1")]
    task, = plan_parts(items, {"id1": "train"}, inputs_per_part=10)
    keys = [make_key(i.speaker, i.video, i.utterance, 0, 0) for i in task.items]
    assert keys == sorted(keys) and len(set(keys)) == 2


def test_uris_in_the_data_are_relative_to_the_input_root(tmp_path):
    from voxmesh.pipelines.build.inputs import common_folder, input_root, relative_to
    folder = tmp_path / "input"
    (folder / "spk" / "vid").mkdir(parents=True)
    (folder / "spk" / "vid" / "00001.mp4").write_bytes(b"")
    raws = discover(str(folder))
    root = input_root(str(folder), [r.uri for r in raws])
    assert root == str(folder)  # the folder given, not the deepest one holding the files
    items, _ = identify(raws, root)
    assert items[0].uri == "spk/vid/00001.mp4" and items[0].location == str(folder / "spk" / "vid" / "00001.mp4")
    assert common_folder(["gs://b/data/x/1.mp4", "gs://b/data/y/2.mp4"]) == "gs://b/data"
    assert common_folder(["gs://b/1.mp4", "s3://c/2.mp4"]) == ""
    assert relative_to("gs://b/data/x/1.mp4", "gs://b/data") == "x/1.mp4"
    assert relative_to("/elsewhere/1.mp4", str(folder)) == "/elsewhere/1.mp4"


def test_parts_are_dealt_to_workers_evenly_by_expected_frames():
    items = [InputItem(f"/v/{k}.mp4", f"id{k}", "vid", "1") for k in range(7)]
    frames = {item.uri: n for item, n in zip(items, (900, 700, 500, 400, 300, 200, 100))}
    tasks = [PartTask("train", k, (item,)) for k, item in enumerate(items)]
    slots = deal_parts(tasks, frames, workers=2)
    load = [sum(frames[t.items[0].uri] for t in tasks if slots[t.name] == slot) for slot in (0, 1)]
    assert sorted(load) == [1500, 1600]  # round robin in plan order would give 1900 and 1200
    assert deal_parts(list(reversed(tasks)), frames, workers=2) == slots  # a function of the plan, not its order
    assert set(deal_parts(tasks[:2], frames, workers=4).values()) == {0, 1}  # fewer parts than workers
