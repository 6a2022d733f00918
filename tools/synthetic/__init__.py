"""Write small synthetic datasets: MARS / DukeMTMC-VideoReID in their real formats, or folders.

The images are rendered, not random: every identity is a simple person figure drawn from its
ID-relevant attributes (clothes colours, sleeve and trouser length, dress, bags, backpack, hat,
hair, gender, age) plus identity-specific fine details (a print on the top, skin and hair tone,
accessory colours, body proportions), so identities that share attributes stay separable.
Every tracklet is drawn from its ID-irrelevant attributes (motion, pose, occlusion, cut-out,
a second person, a dominant background, a target change, missing or wrong targets), and every
camera has its own wide scene (each tracklet sees a window of it), illumination (colour cast,
brightness) and viewpoint (scale, shift, flip). The attribute CSV holds exactly the values used
to render, so re-identification and attribute recognition are both learnable, while an
untrained network scores poorly (see the difficulty constants of :mod:`tools.synthetic.plan`).

Modules: :mod:`~tools.synthetic.plan` (every random draw: people, cameras, tracklets, per-frame
parameters), :mod:`~tools.synthetic.render` (scenes, figures, frames),
:mod:`~tools.synthetic.write` (file layouts, split files, CSV, :func:`write_synthetic_dataset`)
and :mod:`~tools.synthetic.command` (the command line, and :func:`ensure_dataset`: the dataset
of a config with DATASETS.SYNTHETIC.IF_MISSING, written on first use by the commands; the data
package only reads datasets).

Layouts (those of the real datasets, docs/behaviour.md#data):

* MARS: ``bbox_train/<pid4>/<name>.jpg``, ``bbox_test/<pid4>/<name>.jpg`` with names
  ``PPPPCcTttttFfff.jpg``; ``info/train_name.txt`` and ``info/test_name.txt``;
  ``info/tracks_train_info.mat`` (``track_train_info``), ``info/tracks_test_info.mat``
  (``track_test_info``), rows ``[start, end, pid, camid]`` 1-based inclusive into the name
  lists; ``info/query_IDX.mat`` (``query_IDX``, 1-based test rows: as in MARS, the last
  tracklet of each test identity on each camera that shows it twice or more, so every query
  has gallery matches on other cameras); ``mars_attributes.csv``. The test split also holds
  junk tracklets (pid -1, written ``00-1``) and distractors (pid 0), without attribute rows.
* Duke: ``train/``, ``query/``, ``gallery/``, each ``<pid4>/<tracklet4>/PPPP_Cc_Ffff_Xnnnnn.jpg``;
  the gallery folder also holds the query tracklets (one per test identity) and a few
  gallery-only identities; tracklet numbers (folder names) are unique over the dataset, as the
  ``tracklets_id`` column of the real ``duke_attributes.csv``.
* folder (your own data, :mod:`data.datasets.folder`): ``train/``, ``query/``, ``gallery/``,
  each ``<pid4>/<camid>_<tracklet4>/<frame4>.jpg``, with MARS's plan: the junk tracklets in
  ``gallery/-1/``, the distractors as gallery pid ``0000``; ``attributes.yml`` (MARS's
  attributes) and ``attributes.csv`` (``pid, camid, tracklet``: a row for every tracklet but
  the junk).

The attribute columns are those of the dataset class's ``attribute_schema`` (MARS's for
the folder format); ``attributes=False`` writes no attribute file. Train and test identities are
disjoint (half each); an identity's tracklets are spread over
``min(cameras, max(2, tracklets - 1))`` cameras. Tracklet lengths vary by up to a quarter
around ``frames``. A marker file (:data:`MARKER_NAME`) is written last into a temporary sibling
folder that is then renamed, so an interrupted write never looks like a complete dataset; it
records the arguments, and a dataset written with other ones is replaced only with
``overwrite``.

Example::

    python -m tools.synthetic --format mars --out data/mars_synthetic
    python -m tools.synthetic --format folder --out data/demo_tracklets [--no-attributes]
"""

from tools.synthetic.command import build_parser, ensure_dataset, main
from tools.synthetic.plan import FORMATS
from tools.synthetic.write import MARKER_NAME, write_synthetic_dataset

__all__ = ["FORMATS", "MARKER_NAME", "build_parser", "ensure_dataset", "main",
           "write_synthetic_dataset"]
