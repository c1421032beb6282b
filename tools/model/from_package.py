"""Rebuild the PyTorch training state of a model package (the inverse of export.py): the text
encoder + UNet (TextToVideo) and the autoencoder, written as a state directory that train.py
(--resume), sample.py, fifo.py and tools/bench/generate_vs_pytorch.py read.

How initializers are traced back to parameters: a fresh model of the package's config gets every
parameter filled with distinct exact values (integers x 2^-24) and is exported exactly as export.py
does (common.export_graph: same torch, same dynamo exporter, opset 18) to a temporary folder. The
fresh graphs must match the package's node for node (ops, tensor names, attributes, initializer
names and shapes); each fresh initializer whose sorted values equal a parameter's then names that
parameter and gives the element order the exporter chose (kept, transposed for MatMul, reshaped to
[C, 1, 1] for GroupNorm's affine, ...), which is applied to the package's initializer. Every other
initializer must be a constant bit-identical to the fresh one. Unmapped parameters or initializers
fail loudly. Cross-check: renamed initializers are consumed by a node whose exporter metadata
(`pkg.torch.onnx.fx_node`) names the parameter's placeholder (`%p_<name>`).

Verification (printed, required below TOL): each rebuilt module against onnxruntime on the
package's graph (UNet at batch 1 and 2 with per-frame timesteps and per-frame context, the text
encoder on real prompts and the empty one, decoder, encoder).

What cannot be recovered, and what is written instead:
  - the raw (non-EMA) weights: the package holds the EMA weights; the checkpoint's `model` and `ema`
    are both those (training resumes from the EMA weights).
  - the AdamW moments: the checkpoint has no `opt` entry, which train.py's resume path treats like
    --reset-optimizer (fresh moments, a new learning-rate warm-up from this step); pass
    --reset-optimizer anyway.
  - the RNG states: fresh ones seeded from (config seed, step), so the data stream is new, not the
    lost run's continuation.

  python tools/model/from_package.py --package models/shapes-t2v-tiny --state /work/train-state
"""
import argparse
import json
import os
import re
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "export"))
import common  # noqa: E402
import export  # noqa: E402
import nets  # noqa: E402
import world  # noqa: E402

TOL = 1e-4  # max abs difference allowed between the rebuilt module and onnxruntime on the package


def tag_parameters(modules):
    """Distinct exact values in every parameter and buffer (a shuffled block of integers x 2^-24
    each), so each is recognisable from its sorted values whatever layout the exporter stores it
    in. Buffers too: the package's `freqs` differs from a freshly computed one by an ulp (another
    machine's exp), and the checkpoint should hold the exported values."""
    g = torch.Generator().manual_seed(0)
    start = 1
    with torch.no_grad():
        for module in modules:
            for p in list(module.parameters()) + list(module.buffers()):
                n = p.numel()
                assert start + n < 2 ** 24, "more values than float32 holds exactly"
                p.copy_(((start + torch.randperm(n, generator=g)).double() * 2.0 ** -24).float().view_as(p))
                start += n


def load(path):
    m = onnx.load(path)  # with the external data
    return m, {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def structure(m):
    g = m.graph
    return ([(n.op_type, list(n.input), list(n.output), [a.SerializeToString() for a in n.attribute])
             for n in g.node],
            [(i.name, list(i.dims), i.data_type) for i in g.initializer],
            [v.SerializeToString() for v in list(g.input) + list(g.output)])


def trace(fresh_inits, params):
    """Fresh initializer name -> (parameter name, perm) with init.flat[k] == param.flat[perm[k]]."""
    by_values = {np.sort(p.ravel()).tobytes(): name for name, p in params.items()}
    found = {}
    for iname, a in fresh_inits.items():
        name = by_values.get(np.sort(a.ravel()).tobytes()) if a.dtype == np.float32 else None
        if name is not None:
            perm = np.empty(a.size, dtype=np.int64)
            perm[np.argsort(a.ravel(), kind="stable")] = np.argsort(params[name].ravel(), kind="stable")
            found[iname] = (name, perm)
    return found


def consumers_mention(m, iname, pname):
    """Whether a node consuming `iname` names the parameter's placeholder in its metadata. Dots
    become underscores, so `mid.res.x` and `mid_res.x` collide and the exporter suffixes one `_1`
    (why the metadata alone cannot name parameters reliably)."""
    pat = re.compile(r"%p_" + re.escape(pname.replace(".", "_")) + r"(_\d+)?\b")
    for n in m.graph.node:
        if iname in n.input:
            meta = {p.key: p.value for p in n.metadata_props}
            if pat.search(meta.get("pkg.torch.onnx.fx_node", "")):
                return True
    return False


def recover(fresh_path, pkg_path, module):
    """Parameters and buffers of `module` (named as in its state_dict) from the package's graph."""
    fresh, fresh_inits = load(fresh_path)
    pkg, pkg_inits = load(pkg_path)
    name = os.path.basename(pkg_path)
    if structure(fresh) != structure(pkg):
        sys.exit(f"{name}: the package's graph differs from a fresh export of the same model "
                 f"(another torch/onnxscript version?); the name mapping does not apply")
    params = {n: p.detach().numpy() for n, p in list(module.named_parameters()) + list(module.named_buffers())}
    buffers = {n for n, _ in module.named_buffers()}
    mapping = trace(fresh_inits, params)
    out, layouts, renamed, confirmed, has_meta = {}, {}, 0, 0, any(n.metadata_props for n in pkg.graph.node)
    for iname, (pname, perm) in mapping.items():
        flat = np.empty(perm.size, dtype=np.float32)
        flat[perm] = pkg_inits[iname].ravel()
        value = flat.reshape(params[pname].shape)
        if pname in out and not np.array_equal(out[pname], value):
            sys.exit(f"{name}: {pname} is stored twice with different values")
        out[pname] = value
        stored = pkg_inits[iname]
        kind = ("kept" if iname == pname else
                "transposed" if value.ndim == 2 and np.array_equal(stored.ravel(), value.T.ravel()) else
                "reshaped" if np.array_equal(stored.ravel(), value.ravel()) else "permuted")
        layouts[kind] = layouts.get(kind, 0) + 1
        if iname != pname:
            renamed += 1
            if has_meta and pname not in buffers and not consumers_mention(pkg, iname, pname):
                sys.exit(f"{name}: {iname} traced to {pname}, but no consumer's metadata names its placeholder")
            confirmed += has_meta and pname not in buffers
    missing = sorted(set(params) - set(out))
    if missing:
        sys.exit(f"{name}: parameters not found in the graph: {missing}")
    for iname, a in pkg_inits.items():  # the rest must be the exporter's own constants
        if iname not in mapping and not np.array_equal(a, fresh_inits[iname]):
            sys.exit(f"{name}: initializer {iname} {a.shape} holds no parameter and is not the fresh constant")
    print(f"{name}: {len(params) - len(buffers)} params + {len(buffers)} buffers from {len(mapping)} of "
          f"{len(pkg_inits)} initializers ({len(pkg_inits) - len(mapping)} constants, identical to a fresh "
          f"export); layouts {layouts}; {renamed} renamed, {confirmed} confirmed by node metadata"
          + ("" if has_meta else " (the package has no node metadata)"))
    return {k: torch.from_numpy(v) for k, v in out.items()}


def max_diff(path, module, names, inputs):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = module(*inputs).numpy()
    got = sess.run(None, {n: x.numpy() for n, x in zip(names, inputs)})[0]
    return float(np.abs(got - want).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", default="models/shapes-t2v-tiny")
    ap.add_argument("--state", default="/work/train-state", help="the training state directory to write")
    ap.add_argument("--force", action="store_true", help="write even if the state already holds a run")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    manifest = json.load(open(os.path.join(args.package, "model.json")))
    cfg, step = manifest["training"]["config"], manifest["training"]["step"]
    scale = manifest["latent"]["scale_factor"]
    mc = cfg["model"]
    ckpt_name = f"ckpt-{step:07d}.pt"
    if ckpt_name != manifest["training"]["checkpoint"]:
        sys.exit(f"model.json names {manifest['training']['checkpoint']}, step {step} gives {ckpt_name}")
    held = os.listdir(args.state) if os.path.isdir(args.state) else []
    if not args.force and any(f == "ae.pt" or f.startswith("ckpt-") for f in held):
        sys.exit(f"{args.state} already holds a run; pass --force or another --state")
    pkg = lambda name: os.path.join(args.package, manifest["graphs"][name]["file"])

    # Fresh, tagged model exported the way export.py does it (same example input shapes).
    torch.manual_seed(0)
    model, ae = nets.TextToVideo(mc), nets.AutoEncoder()
    model.eval()
    ae.eval()
    tag_parameters([model, ae])
    f, zc, size, tokens, d = mc["frames"], mc["latent_channels"], mc["latent_size"], mc["max_tokens"], mc["text_dim"]
    ids = model.tokenizer(["a red circle moving right on a black background", ""])
    graphs = {
        "text_encoder": (export.TextGraph(model.text), (ids,), ["ids"], "context", "text."),
        "unet": (model.unet, (torch.randn(2, f, zc, size, size), torch.randint(0, 1000, (2, f)).float(),
                              torch.randn(2, f, tokens, d)), ["latents", "timesteps", "context"], "v", "unet."),
        "decoder": (ae.decoder, (torch.randn(2, zc, size, size),), ["latents"], "rgb", "decoder."),
        "encoder": (ae.encoder, (torch.randn(2, 3, world.SIZE, world.SIZE),), ["rgb"], "latents", "encoder."),
    }
    t2v_state, ae_state = dict(model.state_dict()), dict(ae.state_dict())  # buffers: fresh = exported
    with tempfile.TemporaryDirectory() as tmp:
        for name, (module, inputs, names, output, prefix) in graphs.items():
            t0 = time.time()
            fresh = os.path.join(tmp, f"{name}.onnx")
            common.export_graph(module, inputs, names, output, fresh, check_batches=(1,))
            got = recover(fresh, pkg(name), module)
            target = ae_state if name in ("decoder", "encoder") else t2v_state
            for k, v in got.items():
                key = k if name == "text_encoder" else prefix + k  # TextGraph's names already start "text."
                target[key] = v
            print(f"  ({time.time() - t0:.0f} s)", flush=True)
    ae_state["scale"] = torch.tensor(scale)
    model.load_state_dict(t2v_state)
    ae.load_state_dict(ae_state)

    # Verification: the rebuilt modules against onnxruntime on the package's graphs.
    g = torch.Generator().manual_seed(1)
    prompts = world.sample_prompts(6, g, "train") + world.sample_prompts(2, g, "held_out") + [""]
    err = {"text_encoder.onnx": max_diff(pkg("text_encoder"), model.text, ["ids"], [model.tokenizer(prompts)])}
    for b in (1, 2):  # a timestep and a prompt per frame
        x = torch.randn(b, f, zc, size, size, generator=g)
        t = torch.randint(0, 1000, (b, f), generator=g).float()
        with torch.no_grad():
            ctx = model.encode_prompts(world.sample_prompts(b * f, g, "all")).view(b, f, tokens, d)
        err[f"unet.onnx B={b}"] = max_diff(pkg("unet"), model.unet, ["latents", "timesteps", "context"], [x, t, ctx])
    err["decoder.onnx"] = max_diff(pkg("decoder"), ae.decoder, ["latents"],
                                   [torch.randn(4, zc, size, size, generator=g) / scale])
    err["encoder.onnx"] = max_diff(pkg("encoder"), ae.encoder, ["rgb"],
                                   [world.sample_clips(4, g, "all").render([0])[:, 0]])
    for k, v in err.items():
        print(f"verify {k}: max abs diff torch vs onnxruntime {v:.2e} (tolerance {TOL:.0e})")
    bad = [k for k, v in err.items() if not v < TOL]
    if bad:
        sys.exit(f"verification failed for {bad}; nothing written")

    # The state directory, in train.py's formats.
    os.makedirs(args.state, exist_ok=True)
    weights = model.state_dict()
    recovered = {"package": os.path.abspath(args.package), "time": time.time(), "max_abs_diff": err,
                 "note": "model = ema = the package's EMA weights; no optimizer moments (resume with "
                         "--reset-optimizer); fresh RNG states"}
    train_rng = torch.Generator().manual_seed(cfg["seed"] + step)  # fresh streams, not the lost run's
    data_rng = torch.Generator().manual_seed(cfg["seed"] + 1 + step)
    export_cfg = dict(cfg, recovered_from_package=recovered)
    torch.save({"model": ae.state_dict(), "config": export_cfg, "scale": float(ae.scale)},
               os.path.join(args.state, "ae.pt"))
    torch.save({"step": step, "model": weights, "ema": weights, "rng": train_rng.get_state(),
                "data_rng": data_rng.get_state(), "config": export_cfg, "time": time.time()},
               os.path.join(args.state, ckpt_name))
    with open(os.path.join(args.state, "config.json"), "w") as fcfg:
        json.dump(export_cfg, fcfg, indent=1)
    with open(os.path.join(args.state, "train.log"), "a") as flog:
        flog.write(time.strftime("%Y-%m-%d %H:%M:%S ") + f"recovered step {step} from {recovered['package']} "
                   f"(tools/model/from_package.py): {json.dumps(err)}\n")
    print(f"wrote {args.state}: {ckpt_name} (step {step}), ae.pt (scale {float(ae.scale):.4f}), config.json")


if __name__ == "__main__":
    main()
