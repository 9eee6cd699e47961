"""One input of the build: a video URI with its speaker, video and utterance ids."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class InputItem:
    """One input video: its URI and the ids its samples are named by."""

    uri: str
    speaker: str
    video: str
    utterance: str
    split: str = ""  # from the source (a listing's split column); empty: by speaker hash

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
