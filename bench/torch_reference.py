"""PyTorch reference of fer's models, for speed comparisons run in the same command as fer's.

The CNN and DNN are the report's (SEED Q1/Q2) layer for layer, with the same parameter counts
(CNN 4,084,295 trainable + 3,584 BatchNorm buffers, DNN 4,099,847).

  python bench/torch_reference.py bench --model cnn [--batch-size 128] [--mode fp32|channels_last|bf16] [--json]
  python bench/torch_reference.py train --data DIR --model cnn --minutes 60   # real-data training reference
"""
import argparse
import json
import time

import torch
import torch.nn as nn


def cnn():
    layers, cin = [], 1
    for cout, k, pool, p in [(64, 5, False, 0.2), (64, 3, True, 0.2), (128, 3, True, 0.3), (256, 3, True, 0.4), (512, 3, True, 0.4)]:
        layers += [nn.Conv2d(cin, cout, k, padding="same"), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers.append(nn.Dropout(p))
        cin = cout
    layers += [nn.Flatten(), nn.Linear(4608, 512), nn.BatchNorm1d(512), nn.LeakyReLU(0.1), nn.Dropout(0.5),
               nn.Linear(512, 256), nn.BatchNorm1d(256), nn.LeakyReLU(0.1), nn.Dropout(0.5), nn.Linear(256, 7)]
    return nn.Sequential(*layers)


def dnn():
    layers, fin = [nn.Flatten()], 2304
    for units, p in [(1024, 0.3), (1024, 0.3), (512, 0.4), (256, 0.5), (128, 0.5)]:
        layers += [nn.Linear(fin, units), nn.LeakyReLU(0.1), nn.Dropout(p)]
        fin = units
    layers.append(nn.Linear(fin, 7))
    return nn.Sequential(*layers)


def build(name):
    return {"cnn": cnn, "dnn": dnn}[name]()


def bench(args):
    torch.manual_seed(0)
    dev = args.device
    model = build(args.model).to(dev)
    b = args.batch_size
    fmt = torch.channels_last if args.mode == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    autocast = torch.autocast(dev, dtype=torch.bfloat16) if args.mode == "bf16" else torch.autocast(dev, enabled=False)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def step():
        x = torch.rand(b, 1, 48, 48, device=dev).to(memory_format=fmt)
        y = torch.randint(0, 7, (b,), device=dev)
        with autocast:
            loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    model.train()
    step()
    sync()
    t = time.perf_counter()
    for _ in range(args.train_steps):
        step()
    sync()
    train_s = (time.perf_counter() - t) / args.train_steps

    model.eval()
    x = torch.rand(b, 1, 48, 48, device=dev).to(memory_format=fmt)
    x1 = torch.rand(1, 1, 48, 48, device=dev).to(memory_format=fmt)
    with torch.no_grad(), autocast:
        model(x)
        sync()
        t = time.perf_counter()
        for _ in range(args.infer_batches):
            model(x)
        sync()
        infer_s = (time.perf_counter() - t) / args.infer_batches
        model(x1)
        sync()
        t = time.perf_counter()
        for _ in range(args.latency_runs):
            model(x1)
        sync()
        latency_ms = 1e3 * (time.perf_counter() - t) / args.latency_runs
    out = {"impl": f"pytorch {torch.__version__} {args.mode}", "model": args.model, "batch_size": b,
           "train_step_s": train_s, "train_img_per_s": b / train_s, "infer_img_per_s": b / infer_s,
           "latency_b1_ms": latency_ms, "threads": torch.get_num_threads(), "device": dev}
    print(json.dumps(out) if args.json else out)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--model", default="cnn")
    b.add_argument("--batch-size", type=int, default=128)
    b.add_argument("--mode", default="fp32", choices=["fp32", "channels_last", "bf16"])
    b.add_argument("--train-steps", type=int, default=3)
    b.add_argument("--infer-batches", type=int, default=5)
    b.add_argument("--latency-runs", type=int, default=50)
    b.add_argument("--json", action="store_true")
    b.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = sub.add_parser("ascent")
    a.add_argument("--layer", default="block1.act")
    a.add_argument("--filters", type=int, default=64)
    a.add_argument("--steps", type=int, default=20)
    c = sub.add_parser("count")
    c.add_argument("--model", default="cnn")
    args = p.parse_args()
    if args.cmd == "bench":
        bench(args)
    elif args.cmd == "ascent":
        ascent(args)
    else:
        m = build(args.model)
        trainable = sum(q.numel() for q in m.parameters())
        buffers = sum(q.numel() for n, q in m.named_buffers() if "running" in n)
        print(json.dumps({"trainable": trainable, "buffers": buffers, "total": trainable + buffers}))



def ascent(args):
    """Gradient ascent of many filters at once, the same procedure as `fer explain ascent`."""
    torch.manual_seed(0)
    model = build("cnn").eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # Index of the LeakyReLU module of the block in the Sequential above.
    layer_index = {"block1.act": 2, "block2.act": 6, "block3.act": 11, "block4.act": 16, "block5.act": 21}[args.layer]
    trunk = model[: layer_index + 1]
    with torch.no_grad():
        channels = trunk(torch.zeros(1, 1, 48, 48)).shape[1]
    filters = list(range(min(args.filters, channels)))
    x = (0.5 + 0.08 * (2 * torch.rand(len(filters), 1, 48, 48) - 1)).requires_grad_(True)
    idx = torch.tensor(filters)
    t = time.perf_counter()
    for _ in range(args.steps):
        act = trunk(x)
        obj = act[torch.arange(len(filters)), idx].mean(dim=(1, 2)).sum()
        (g,) = torch.autograd.grad(obj, x)
        rms = g.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-8
        x = (x + 0.02 * g / rms).detach().requires_grad_(True)
    seconds = time.perf_counter() - t
    print(json.dumps({"impl": f"pytorch {torch.__version__}", "layer": args.layer, "filters": len(filters), "steps": args.steps, "seconds": seconds}))


if __name__ == "__main__":
    main()
