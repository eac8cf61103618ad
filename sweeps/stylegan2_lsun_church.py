"""Fig. 4d: StyleGAN2 128 px on LSUN Church, nsgda with the profile made on FFHQ.

adam, ada-nsgda, sgda, nsgda (one lr for every layer) and nsgda with the FFHQ profile (the
paper's finding: it transfers), each over a log grid of step sizes, 3 tuning seeds (then the
chosen step size on 5 fresh seeds), batch 32, 2600 kimg.
The profile is the one ``sweeps/stylegan2_ffhq.py`` wrote under the same ``--storage``
(``stylegan2_ffhq_profile/profile.json``), or ``--profile FILE``. Data: $GANSWEEP_LSUN_CHURCH.

    python sweeps/stylegan2_lsun_church.py [--profile FILE] [--smoke] [--address ADDR]
                                           [--storage URI] [--resume] [--max-concurrent N]
"""

from sweeps.engine import Resources, Sweep, main
from sweeps.stylegan2_presets import cells, profile_option, run_with_profile

SWEEP = Sweep(
    name="stylegan2_lsun_church",
    experiment="stylegan2",
    metric="fid",
    seeds=range(3),
    confirm_seeds=5,  # the chosen step size of each cell on fresh seeds 3-7
    cells=cells("lsun_church"),
    fixed={"device": "auto"},  # data: $GANSWEEP_LSUN_CHURCH on the workers, or data_path
    resources=Resources(cpu=8, gpu=1),
)

if __name__ == "__main__":
    main(
        SWEEP,
        program=lambda args: run_with_profile(SWEEP, args, profile_from="stylegan2_ffhq"),
        options=profile_option,
    )
