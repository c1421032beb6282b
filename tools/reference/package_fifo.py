"""The reference FIFO loop (fifo_official.py, float64, the project's Philox noise) driving a real
model package's graphs in onnxruntime: the independent reference for `fifo generate` on
exported packages (tests compare the CLI's frames with this script's).

  python tools/reference/package_fifo.py --model tests/fixtures/packages/modelscope-tiny \
      --prompt "a red panda" --frames 6 --partitions 2 --seed 7 --out DIR

Writes DIR/frame_000000.png ... (the frames and names `fifo generate --out DIR/` writes) and
DIR/run.json (the settings, which the Rust test replays through the CLI). Supports packages with
`betas` scaled_linear or linear, `spacing` official_linspace, `final_alpha` first_train_step (the official
VideoCrafter schedule fifo_official.py transcribes) and epsilon or v prediction, or a rectified-flow
schedule (fifo_flow.py's loop; Wan), and causal decoders (several frames per latent, state carried).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fifo_flow  # noqa: E402
import fifo_official  # noqa: E402


class Package:
    def __init__(self, folder):
        import onnxruntime as ort
        with open(os.path.join(folder, "model.json")) as f:
            self.spec = json.load(f)
        self.folder = folder
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.sessions = {}
        for name, graph in self.spec["graphs"].items():
            self.sessions[name] = ort.InferenceSession(os.path.join(folder, graph["file"]), opts,
                                                       providers=["CPUExecutionProvider"])
        first = self.spec["graphs"]["decoder"].get("first")
        if first:  # a causal decoder: its first latent's graph
            self.sessions["decoder_first"] = ort.InferenceSession(os.path.join(folder, first), opts,
                                                                  providers=["CPUExecutionProvider"])
        self.decoder_state = None
        s = self.spec["schedule"]
        self.flow = s.get("process", {}).get("kind") == "rectified_flow"
        if not self.flow:
            assert s["betas"]["kind"] in ("scaled_linear", "linear") and s["spacing"]["kind"] == "official_linspace", s
            assert s["final_alpha"] == "first_train_step", s
        assert s["train_timesteps"] == 1000, s
        lat = self.spec["latent"]
        self.frame_shape = (lat["channels"], lat["height"], lat["width"])

    def run(self, graph, *values):
        """One graph on its inputs in the package's order (the UNet: latents, timesteps, context)."""
        g = self.spec["graphs"][graph]
        names = [g["latents"], g["timesteps"], g["context"]] if graph == "unet" else [g["input"]]
        return self.sessions[graph].run([g["output"]], dict(zip(names, values)))[0]

    def encode(self, prompt):
        text = self.spec["text"]
        if text["tokenizer"] == "huggingface":
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(os.path.join(self.folder, text.get("file", "tokenizer.json")))
            tok.enable_truncation(text["max_tokens"])
            tok.enable_padding(length=text["max_tokens"], pad_id=text["pad_id"])
            ids = tok.encode(prompt).ids
        else:
            raise SystemExit(f"tokenizer {text['tokenizer']} is not supported by this script")
        return self.run("text_encoder", np.array([ids], np.int64))[0]  # [T, D]

    def guided_model(self, prompt, guidance, alphas_cumprod):
        """model(x [f, D], t [f]) -> guided epsilon [f, D], the Rust pipeline's order of work:
        conditional and unconditional passes batched, guidance on the predictions."""
        cond, uncond = self.encode(prompt), self.encode("")
        prediction = "velocity" if self.flow else self.spec["schedule"]["prediction"]

        def model(x, t):
            f = x.shape[0]
            lat = x.astype(np.float32).reshape((1, f) + self.frame_shape)
            ts = np.asarray(t, np.float32).reshape(1, f)
            ctx = np.stack([np.broadcast_to(cond, (f,) + cond.shape), np.broadcast_to(uncond, (f,) + cond.shape)])
            out = self.run("unet", np.concatenate([lat, lat]), np.concatenate([ts, ts]), ctx.astype(np.float32)).astype(np.float64).reshape(2, f, -1)
            if prediction == "v_prediction":  # eps = sqrt(a) v + sqrt(1 - a) x
                a = alphas_cumprod[np.asarray(t, np.int64)][:, None]
                out = np.sqrt(a) * out + np.sqrt(1 - a) * x[None]
            else:
                assert prediction in ("epsilon", "velocity"), prediction
            e_c, e_u = out[0], out[1]
            return e_u + guidance * (e_c - e_u) if guidance != 1.0 else e_c
        return model

    def decode(self, latent):
        """One latent's frames as HxWx3 bytes: one, or several from a causal decoder (which
        carries its state from call to call)."""
        lat, g = self.spec["latent"], self.spec["graphs"]["decoder"]
        z = (latent / lat["scale_factor"]).astype(np.float32).reshape((1,) + self.frame_shape)
        if "first" in g:
            names = [g["output"]] + g["next_state"]
            if self.decoder_state is None:
                out = self.sessions["decoder_first"].run(names, {g["input"]: z})
            else:
                out = self.sessions["decoder"].run(names, {g["input"]: z, **dict(zip(g["state"], self.decoder_state))})
            self.decoder_state = out[1:]
            frames = list(out[0][0])  # [k, 3, H, W]
        else:
            frames = [self.run("decoder", z)[0]]  # [3, H, W]
        lo, hi = self.spec["image"]["range"]
        return [np.clip(np.round((rgb - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
                for rgb in frames]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--partitions", type=int)
    ap.add_argument("--no-lookahead", action="store_true")
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--eta", type=float)
    ap.add_argument("--init", choices=["clip", "noise"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    pkg = Package(args.model)
    d = pkg.spec["defaults"]
    f = pkg.spec["frames"]
    n = args.partitions or d["partitions"]
    guidance = d["guidance"] if args.guidance is None else args.guidance
    eta = d["eta"] if args.eta is None else args.eta
    D = int(np.prod(pkg.frame_shape))
    lookahead, init = not args.no_lookahead and d["lookahead"], args.init or d["init"]
    # --frames counts video frames; a causal decoder makes several per latent.
    g = pkg.spec["graphs"]["decoder"]
    first, per = (g.get("first_frames", 1), g.get("frames_per_latent", 1)) if "first" in g else (1, 1)
    latents = 1 + max(0, -(-(args.frames - first) // per))
    if pkg.flow:
        model = pkg.guided_model(args.prompt, guidance, None)
        shift = pkg.spec["schedule"]["process"]["shift"]
        run = fifo_flow.fifo_flow(f, n, lookahead, init, guidance, args.seed, shift, latents, model=model, dim=D)
    else:
        betas = pkg.spec["schedule"]["betas"]
        sched = fifo_official.Schedule(f * n, eta, 1000, betas["start"], betas["end"], betas["kind"])
        model = pkg.guided_model(args.prompt, guidance, sched.alphas_cumprod)
        run = fifo_official.fifo_sampling(f, n, lookahead, init, eta, guidance, args.seed, D, None, latents,
                                          beta_start=betas["start"], beta_end=betas["end"], model=model,
                                          beta_kind=betas["kind"])
    os.makedirs(args.out, exist_ok=True)
    from PIL import Image
    frames = [frame for latent in run["output"] for frame in pkg.decode(latent)][:args.frames]
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(args.out, f"frame_{i:06}.png"))
    settings = {"prompt": args.prompt, "frames": args.frames, "partitions": n, "lookahead": not args.no_lookahead
                and d["lookahead"], "guidance": guidance, "eta": eta, "init": args.init or d["init"], "seed": args.seed}
    with open(os.path.join(args.out, "run.json"), "w") as fj:
        json.dump(settings, fj, indent=1)
        fj.write("\n")
    print(f"wrote {len(frames)} frames ({len(run['output'])} latents) to {args.out}")


if __name__ == "__main__":
    main()
