"""Reading a voxmesh dataset back: streaming through WebDataset, or chosen samples by key.

The dataset may be a local folder or a URI on any Beam file system (``s3://``, ``gs://``):
:func:`shard_paths` of such a dataset routes webdataset's ``s3``/``gs`` URLs through
``storage.open_read``, so ``webdataset``/``wids`` pipelines over its paths read them with the same
clients and credentials as the build. webdataset (which loads torch) is imported only when a
reader needs it, never by the build."""

from __future__ import annotations

import difflib
import json
import tarfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from . import storage
from .errors import DatasetStateError, MissingFileError, SampleNotFound
from .sample import Sample, SampleMeta, decode_npy
from .shards import BUILD_RECORD, META_DIR, SHARDS_DIR, committed_stats, iter_tar_samples
from .tables import read_parquet

if TYPE_CHECKING:
    import webdataset as wds


def shard_paths(out_dir: str, split: str | None = None) -> list[str]:
    """Paths (or URIs) of the committed shard tars of ``split`` (all splits when None), sorted."""
    if storage.is_remote(out_dir):
        storage.register_webdataset_schemes()
    return [storage.join(out_dir, SHARDS_DIR, f"{s.shard}.tar") for s in committed_stats(out_dir)
            if split is None or s.split == split]


def open_split(out_dir: str, split: str | None = None) -> wds.WebDataset:
    """A ``webdataset.WebDataset`` over the committed shards, decoding ``.npy`` and ``.json``.

    Each item is a dict with ``__key__``, ``mesh.npy``, ``pose.npy``, ``audio.npy``,
    ``lmk2d.npy``, ``meta.json`` (and ``coeffs.npy``, ``neutral.npy`` when present) as arrays and a dict.
    """
    import webdataset as wds
    paths = shard_paths(out_dir, split)
    if not paths:
        splits = sorted({s.split for s in committed_stats(out_dir)})
        if splits:
            raise MissingFileError(f"{out_dir} has no shards of split {split} (its splits: {', '.join(splits)}); "
                                   f"choose one of those, or build with --split-fractions that give it speakers")
        raise MissingFileError(f"no committed shards under {out_dir}; run `voxmesh build` first")
    return wds.WebDataset(paths, shardshuffle=False, empty_check=False, handler=raise_naming_the_shard).map(decode_members)


# What reading a shard raises when its tar is missing, truncated or not a tar at all.
SHARD_READ_ERRORS = (tarfile.TarError, EOFError, OSError)


def unreadable_shard(path: str, error: Exception) -> MissingFileError | DatasetStateError:
    """The one-line error for the shard at ``path`` that could not be read (``error``): it names
    the shard and says to validate its dataset."""
    dataset = path.rsplit(f"/{SHARDS_DIR}/", 1)[0]
    if isinstance(error, FileNotFoundError):
        return MissingFileError(f"{path}: no such file; run `voxmesh validate {dataset}`")
    detail = str(error.args[0] if error.args else error).split(" @ ", 1)[0].splitlines()[0] or type(error).__name__
    return DatasetStateError(f"{path}: truncated or unreadable shard ({detail}); run `voxmesh validate {dataset}`")


def raise_naming_the_shard(error: Exception) -> bool:
    """A webdataset exception handler: a shard that cannot be read is :func:`unreadable_shard`.
    webdataset calls its handlers first where a tar's members are read, without the shard's URL,
    then again, with the URL appended to ``error.args``, where the shard was opened: the first
    call re-raises as it is, so that the second one names the shard (a shard that is not there is
    named by the error itself). Anything else is re-raised."""
    url = next((arg for arg in reversed(error.args) if isinstance(arg, str) and arg.endswith(".tar")), None)
    if url is None and isinstance(error, FileNotFoundError) and isinstance(error.filename, str):
        url = error.filename
    if url is None or not isinstance(error, SHARD_READ_ERRORS):
        raise error
    raise unreadable_shard(url, error) from None


def decode_members(item: dict) -> dict:
    """Decode a raw WebDataset (or ``wids``) item's ``.npy`` and ``.json`` members; other members
    stay bytes. Member names lose the leading dot that ``wids`` gives them (``.mesh.npy``).

    Used instead of webdataset's default decoders, which unpickle ``.pyd``/``.pickle`` members:
    shards may come from anywhere, and nothing in them is ever unpickled; and instead of wids's,
    which need Pillow."""
    decoded = {}
    for name, value in item.items():
        name = name if name.startswith("__") else name.lstrip(".")
        if name.endswith((".npy", ".json")):
            data = value.read() if hasattr(value, "read") else bytes(value)  # wids gives file objects
            value = decode_npy(data) if name.endswith(".npy") else json.loads(data)
        decoded[name] = value
    return decoded


def iter_samples(out_dir: str, split: str | None = None) -> Iterator[Sample]:
    """Yield :class:`Sample` objects from the committed shards, in shard and key order."""
    for item in open_split(out_dir, split):
        yield Sample(meta=SampleMeta.from_dict(item["meta.json"]), mesh=item["mesh.npy"],
                     pose=item["pose.npy"], audio=item["audio.npy"], lmk2d=item["lmk2d.npy"],
                     coeffs=item.get("coeffs.npy"), neutral=item.get("neutral.npy"))


def read_manifest(out_dir: str, columns: list[str] | None = None) -> list[dict]:
    """The rows of ``manifest.parquet`` (only ``columns`` when given)."""
    return read_dataset_table(out_dir, "manifest.parquet", columns)


def read_dataset_table(out_dir: str, name: str, columns: list[str] | None = None) -> list[dict]:
    """The rows of the dataset's table ``name`` (``manifest.parquet``, ``failures.parquet``);
    MissingFileError, one line naming it, when the folder holds no such table (DatasetStateError
    when a build that has not finished writes the folder)."""
    path = storage.join(out_dir, name)
    try:
        return read_parquet(path, columns).to_pylist()
    except MissingFileError:
        if storage.exists(storage.join(out_dir, META_DIR, BUILD_RECORD)):
            raise DatasetStateError(f"{path}: no such file: the build writing {out_dir} has not finished; run the same "
                                    f"`voxmesh build` with --resume") from None
        raise MissingFileError(f"{path}: no such file; is {out_dir} a dataset written by `voxmesh build`?") from None
    except storage.StorageError:
        raise  # the bucket cannot be reached or read: its own line says what to set
    except (pa.ArrowException, OSError) as error:
        raise DatasetStateError(f"{path}: not a readable Parquet table ({str(error).splitlines()[0]}); "
                                f"run `voxmesh validate {out_dir}`") from None


def load_samples(out_dir: str, keys: Iterable[str]) -> dict[str, Sample]:
    """The samples called ``keys``, found through the manifest; each shard holding one is read
    once. KeyError naming the first key that is missing."""
    shard_of = {row["key"]: row["shard"] for row in read_manifest(out_dir, ["key", "shard"])}
    wanted = set(keys)
    for key in sorted(wanted - set(shard_of)):
        raise SampleNotFound(f"no sample {key!r} in {out_dir}/manifest.parquet; {_keys_like(key, shard_of)}")
    found: dict[str, Sample] = {}
    for shard in sorted({shard_of[key] for key in wanted}):
        path = storage.join(out_dir, SHARDS_DIR, f"{shard}.tar")
        try:
            for key, members in iter_tar_samples(path):
                if key in wanted:
                    found[key] = Sample.from_members(members)
        except SHARD_READ_ERRORS as error:
            raise unreadable_shard(path, error) from None
    for key in sorted(wanted - set(found)):
        raise SampleNotFound(f"sample {key!r} is in the manifest but not in shard {shard_of[key]}; run `voxmesh validate`")
    return found


def _keys_like(key: str, keys: Iterable[str]) -> str:
    """What to try instead of a missing ``key`` (``speaker_video_utterance_track_clip``): the
    closest keys of its speaker, or one of the dataset's keys to show what they look like. Only the
    speaker's keys are compared, so that a dataset of a million clips answers at once."""
    keys = list(keys)
    if not keys:
        return "it has no samples"
    speaker = key.split("_", 1)[0]
    close = difflib.get_close_matches(key, [k for k in keys if k.split("_", 1)[0] == speaker], n=3, cutoff=0.6)
    if close:
        return "closest: " + ", ".join(repr(k) for k in close)
    return f"its {len(keys)} keys look like {min(keys)!r}"


# The manifest's columns that reference_candidates reads.
REFERENCE_COLUMNS = ["key", "split", "speaker"]


def reference_candidates(manifest: list[dict], split: str | None) -> dict[str, list[str]]:
    """Per speaker, the keys of its first two clips of ``split`` (all splits when None) in the order
    of ``manifest`` (its rows, with :data:`REFERENCE_COLUMNS`): where ``voxmesh generate`` takes a
    clip's style reference and template from, and where ``voxmesh eval`` finds the same template
    (two suffice: one of them is another clip)."""
    candidates: dict[str, list[str]] = {}
    for row in manifest:
        kept = candidates.setdefault(row["speaker"], [])
        if (split is None or row["split"] == split) and len(kept) < 2:
            kept.append(row["key"])
    return candidates


def reference_key(candidates: dict[str, list[str]], speaker: str, key: str) -> str | None:
    """The reference clip of clip ``key``: another clip of its speaker, or None."""
    return next((other for other in candidates.get(speaker, []) if other != key), None)
