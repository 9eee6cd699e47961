"""One input of the build: a video URI with its speaker, video and utterance ids."""

from __future__ import annotations

import dataclasses
import os

from voxmesh.schemas import storage


def join_uri(root: str, uri: str) -> str:
    """``uri`` under ``root`` (a local folder or a ``scheme://bucket/...`` prefix); ``uri`` itself
    when the root is empty or ``uri`` is whole."""
    if not root or storage.is_remote(uri) or os.path.isabs(uri):
        return uri
    return storage.join(root, uri)


@dataclasses.dataclass(frozen=True)
class InputItem:
    """One input video: its URI relative to the input root (as the data records it), the root,
    and the ids its samples are named by."""

    uri: str
    speaker: str
    video: str
    utterance: str
    split: str = ""  # from the source (a listing's split column); empty: by speaker hash
    root: str = ""   # the input root; empty when ``uri`` is whole

    @property
    def location(self) -> str:
        """Where the video is read from: the root joined with the relative URI."""
        return join_uri(self.root, self.uri)

    @property
    def key_prefix(self) -> str:
        return f"{self.speaker}_{self.video}_{self.utterance}"

    @property
    def input_id(self) -> str:
        return f"{self.speaker}/{self.video}/{self.utterance}"

    @property
    def key_order(self) -> str:
        """Sorting inputs by this sorts their sample keys (``{prefix}_{track}_{clip}``) too."""
        return f"{self.key_prefix}_"
