"""The 68-point iBUG landmark layout (300-W; dlib, FAN and FLAME's landmark embedding use it) and
its correspondence with MediaPipe Face Mesh vertices."""

from __future__ import annotations

import numpy as np

# Jaw 0-16 (from the subject's right ear to the left), brows 17-26, nose bridge 27-30, nostrils
# 31-35, eyes 36-47, outer lips 48-59, inner lips 60-67.
JAW_68, BROWS_68, NOSE_68, EYES_68, MOUTH_68 = (np.arange(0, 17), np.arange(17, 27), np.arange(27, 36),
                                               np.arange(36, 48), np.arange(48, 68))
NOSE_TIP_68 = 30
# MediaPipe Face Mesh indices of the 68 iBUG landmarks: an approximate correspondence.
MEDIAPIPE_68 = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87])
