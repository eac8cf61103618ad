"""Fig. 4c, 5: StyleGAN2 128 px on FFHQ, in two stages (``sweeps.stylegan2_presets``).

Stage 1: one ada-nsgda run whose mean per-layer adaptive magnitudes become the profile
(``<storage>/stylegan2_ffhq_profile/profile.json``; skipped with ``--profile FILE``). Stage 2:
adam, ada-nsgda, sgda, nsgda (one lr for every layer) and nsgda with the profile, each over a
log grid of step sizes, 3 tuning seeds (then the chosen step size on 5 fresh seeds), batch 32,
2600 kimg, FID of the EMA generator. Data: the zip made by ``python -m trainers.data prepare``, in $GANSWEEP_FFHQ on the workers.

    python sweeps/stylegan2_ffhq.py [--profile FILE] [--smoke] [--address ADDR] [--storage URI]
                                    [--resume] [--max-concurrent N]
    ray submit cluster/config.yaml sweeps/stylegan2_ffhq.py -- --storage s3://BUCKET/runs
"""

from sweeps.engine import Resources, Sweep, main
from sweeps.stylegan2_presets import cells, profile_option, run_with_profile

SWEEP = Sweep(
    name="stylegan2_ffhq",
    experiment="stylegan2",
    metric="fid",
    seeds=range(3),
    confirm_seeds=5,  # the chosen step size of each cell on fresh seeds 3-7
    cells=cells("ffhq"),
    fixed={"device": "auto"},  # data: $GANSWEEP_FFHQ on the workers, or data_path
    resources=Resources(cpu=8, gpu=1),
)

if __name__ == "__main__":
    main(SWEEP, program=lambda args: run_with_profile(SWEEP, args), options=profile_option)
