# runloss.py RUN BATCH: the running training loss/accuracy read from a run's checkpoints
import sys, pathlib
from safetensors.torch import load_file
run, batch = pathlib.Path(sys.argv[1]), int(sys.argv[2])
prev = (0, 0.0, 0.0)
for f in sorted(run.glob("checkpoints/step-*.state.safetensors")):
    s = int(f.name.split("-")[1].split(".")[0])
    d = load_file(str(f))
    if "run.loss_sum.0" not in d:
        continue
    L = d["run.loss_sum.0"].item(); C = d["run.correct.0"].item()
    import json; meta = json.loads(f.with_name(f.name.replace(".state.safetensors", ".json")).read_text())
    n = meta["seen_in_epoch"][0]
    if n < prev[0] or n == 0:
        prev = (0, 0.0, 0.0)
    dn = n - prev[0]
    print(f"step {s:4d} (epoch {meta['epoch'] + 1}, {n} images in): loss {L / n:.4f} acc {C / n:.4f} so far this epoch"
          + (f"; since the last checkpoint: loss {(L - prev[1]) / dn:.4f} acc {(C - prev[2]) / dn:.4f}" if prev[0] and dn else ""))
    prev = (n, L, C)
