"""Shared pieces of the model-family exporters: ONNX export checked against PyTorch, golden
input/output pairs for the Rust parity tests, and the package's model.json.

Every exporter writes the interfaces of docs/model-package.md, so the runtime needs nothing
special per family:
  text_encoder.onnx  ids int64 [B, T]                                  -> context [B, T, D]
  unet.onnx          latents [B, F, C, H, W], timesteps [B, F] (one per frame), context [B, F, T, D]
                                                                       -> prediction [B, F, C, H, W]
  decoder.onnx       unscaled latents [B, C, H, W]                     -> rgb [B, 3, height, width]
  encoder.onnx       rgb [B, 3, height, width]                         -> unscaled latents [B, C, H, W]
"""
import inspect
import json
import os

import numpy as np
import torch

OPSET = 18


# The SD-style VAE (AutoencoderKL) of ModelScope, zeroscope and Latte.
class VaeDecoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode(latents).sample


class VaeEncoder(torch.nn.Module):
    """The posterior's mean: deterministic, as FIFO's clip start re-noises it anyway."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, rgb):
        return self.vae.encode(rgb).latent_dist.mean


class MaskedT5Text(torch.nn.Module):
    """A T5/umT5 encoder under the prompt's attention mask, padding positions zeroed: what the
    Latte (`mask_feature`) and Wan pipelines feed their denoisers."""

    def __init__(self, text, pad_id):
        super().__init__()
        self.text = text
        self.pad_id = pad_id

    def forward(self, ids):
        # Compared as floats (token ids are far below 2^24, so exactly): the GPU backend compares
        # float tensors only.
        keep = (ids.to(torch.float32) != float(self.pad_id)).to(torch.int64)
        hidden = self.text(input_ids=ids, attention_mask=keep).last_hidden_state
        return hidden * keep.unsqueeze(-1).to(hidden.dtype)


def export_graph(module, inputs, names, output, path, check_batches=(1, 2)):
    """Export `module` with a symbolic batch dim on every input, then run the graph in onnxruntime
    at two batch sizes and return the max abs error against PyTorch (raises if the graph fails).
    `output` names the output, or is a list naming each of a tuple of outputs."""
    import onnxruntime as ort
    module.eval()
    outputs = output if isinstance(output, list) else [output]
    batch = torch.export.Dim("batch", min=1, max=1024)
    params = list(inspect.signature(module.forward).parameters.values())
    dynamic = {}
    for i, p in enumerate(params[:len(names)]):
        if p.kind == p.VAR_POSITIONAL:  # forward(self, x, *states): one spec per remaining input
            dynamic[p.name] = tuple({0: batch} for _ in range(len(names) - i))
            break
        dynamic[p.name] = {0: batch}
    with torch.no_grad():
        torch.onnx.export(module, inputs, path, input_names=names, output_names=outputs,
                          opset_version=OPSET, dynamo=True, external_data=True, optimize=True,
                          dynamic_shapes=dynamic)
    strip_metadata(path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    err = 0.0
    for b in check_batches:
        xs = [torch.cat([x] * b)[:b] for x in inputs]
        with torch.no_grad():
            want = module(*xs)
        want = want if isinstance(want, (tuple, list)) else [want]
        got = sess.run(outputs, {n: x.numpy() for n, x in zip(names, xs)})
        for g, w in zip(got, want):
            err = max(err, float(np.abs(g - w.numpy()).max()))
    return err


def export_graphs(graphs, folder, golden):
    """Exports each (name, module, inputs, input names, output name(s)) as folder/name.onnx with
    `export_graph`, prints its check and ops, writes golden pairs (batch 1) when asked; returns
    the max abs errors by file."""
    report = {}
    for name, module, inputs, names, output in graphs:
        path = os.path.join(folder, f"{name}.onnx")
        report[f"{name}.onnx"] = export_graph(module, inputs, names, output, path)
        nodes, ops = op_summary(path)
        print(f"{name}.onnx: onnxruntime vs torch max abs {report[name + '.onnx']:.2e}; {nodes} nodes; "
              f"{' '.join(ops)}", flush=True)
        if golden:
            first = [i[:1] for i in inputs]
            with torch.no_grad():
                want = module(*first)
            save_golden(os.path.join(folder, "golden", name), first, names, output,
                        list(want) if isinstance(want, tuple) else want)
    return report


def tiny_t5_tokenizer(path):
    """The small T5/umT5-style unigram tokenizer of the tokenizer parity tests (pad 0, </s> 1),
    written to `path` for a reduced package; returns it loaded in transformers."""
    import gzip
    import shutil
    from transformers import PreTrainedTokenizerFast
    here = os.path.dirname(os.path.abspath(__file__))
    fixture = os.path.join(here, "..", "..", "tests", "fixtures", "tokenizers", "t5-unigram.tokenizer.json.gz")
    with gzip.open(fixture, "rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return PreTrainedTokenizerFast(tokenizer_file=path, pad_token="<pad>", eos_token="</s>")


def op_summary(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    return len(m.graph.node), sorted({n.op_type for n in m.graph.node})


def save_golden(folder, inputs, names, output_name, output):
    """Inputs and PyTorch's output(s) in the ONNX backend-test layout the Rust tests read:
    folder/input_<k>.pb, folder/output_<k>.pb (TensorProtos carrying their names). `output_name`
    and `output` may be lists."""
    from onnx import numpy_helper
    os.makedirs(folder, exist_ok=True)
    tensors = [(f"input_{k}", n, x) for k, (n, x) in enumerate(zip(names, inputs))]
    if not isinstance(output_name, list):
        output_name, output = [output_name], [output]
    tensors += [(f"output_{k}", n, x) for k, (n, x) in enumerate(zip(output_name, output))]
    for file, name, x in tensors:
        proto = numpy_helper.from_array(x.detach().cpu().numpy(), name)
        with open(os.path.join(folder, f"{file}.pb"), "wb") as f:
            f.write(proto.SerializeToString())


def strip_metadata(path):
    """Drops the exporter's per-node stack traces and doc strings (most of a small graph's bytes);
    weights stay in the external data file."""
    import onnx
    m = onnx.load(path, load_external_data=False)
    for node in m.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    for v in list(m.graph.value_info):
        v.doc_string = ""
    del m.graph.value_info[:]  # shapes are re-inferred by the runtime
    onnx.save(m, path)


def write_manifest(out, manifest):
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def parameter_bytes(module):
    return sum(p.numel() for p in module.parameters()) * 4
