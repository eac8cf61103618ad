"""Fig. 2a, 4a: ResNet WGAN-GP on CIFAR-10 with adam, ada-nsgda, sgda and nsgda.

Each optimizer: a coarse log grid of step sizes (both players), 5 tuning seeds
(then the chosen step size on 5 fresh seeds), 45k generator steps at
batch 64 (2880 kimg), lambda_GP 10, n_dis 5, lr decayed linearly (to 0 at 100k steps, as in the
paper); the best step size by mean final FID (50k samples against the training set).

    python sweeps/wgangp_cifar10.py [--smoke] [--address ADDR] [--storage URI] [--resume]
"""

from sweeps.engine import Resources, Sweep, main
from sweeps.image_presets import optimizer_cells, smoke

SWEEP = Sweep(
    name="wgangp_cifar10",
    experiment="wgangp",
    metric="fid",
    seeds=range(5),
    confirm_seeds=5,  # the chosen step size of each cell on fresh seeds 5-9
    cells=optimizer_cells("cifar10"),
    fixed={"device": "auto"},
    resources=Resources(cpu=4, gpu=0.5),
)

if __name__ == "__main__":
    main(SWEEP, smoke=smoke)
