"""Fig. 1: DCGAN on CIFAR-10 trained with Adam at lr_D / lr_G ratios on a log grid.

lr_G = 2e-4; lr_D = ratio x lr_G for ratios 1/2 .. 64; 5 seeds (then the best ratio on 5
fresh seeds); 100 epochs at batch 64. The
reports carry ``grad_ratio`` (||grad_G(t)||/||grad_G(0)|| + ||grad_D(t)||/||grad_D(0)||) next
to FID, so `analysis.fig1` shows convergence and quality against the ratio.

    python sweeps/dcgan_cifar10_ratio.py [--smoke] [--address ADDR] [--storage URI] [--resume]
"""

from sweeps.engine import Cell, Resources, StepSizes, Sweep, log_grid, main
from sweeps.image_presets import smoke

SWEEP = Sweep(
    name="dcgan_cifar10_ratio",
    experiment="dcgan",
    metric="fid",
    seeds=range(5),
    confirm_seeds=5,  # the chosen step size of each cell on fresh seeds 5-9
    cells=[
        Cell("adam", StepSizes(grid=(2e-4,), ratios=tuple(log_grid(0.5, 64, 8))), dataset="cifar10")
    ],
    fixed={"device": "auto"},
    resources=Resources(cpu=2, gpu=0.25),
)

if __name__ == "__main__":
    main(SWEEP, smoke=smoke)
