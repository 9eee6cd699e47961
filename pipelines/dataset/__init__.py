"""What a built dataset gives a person: ``card`` (the dataset card and wids indexes), ``report``
(summary figures and the HTML stats report), ``preview`` (a sample's meshes rendered beside its
source crop, with its audio)."""
