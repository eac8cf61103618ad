"""Fig. 4c/4d, 5: StyleGAN2 128 px on LSUN Church (with the FFHQ profile).

adam, ada-nsgda, sgda, nsgda over log grids of step sizes, 3 seeds, batch 32, 2600 kimg, and with
``--profile FILE`` (from ``python -m trainers.profiles RUN_DIR --out FILE`` on an ada-nsgda run)
nsgda with that per-layer profile. Data: the image zip in $GANSWEEP_LSUN_CHURCH.

    python sweeps/stylegan2_lsun_church.py [--profile FILE] [--smoke] [--address ADDR] [--storage URI]
"""

import sys

from sweeps.engine import Resources, Sweep, main
from sweeps.stylegan2_presets import cells, stylegan2_smoke, take_profile

PROFILE = take_profile(sys.argv)

SWEEP = Sweep(
    name="stylegan2_lsun_church",
    experiment="stylegan2",
    metric="fid",
    seeds=range(3),
    cells=cells(PROFILE, "lsun_church"),
    fixed={"device": "auto"},  # data: $GANSWEEP_LSUN_CHURCH on the workers, or data_path
    resources=Resources(cpu=8, gpu=1),
)

if __name__ == "__main__":
    main(SWEEP, smoke=stylegan2_smoke)
