"""REFERENCE ONLY: a PyTorch eager implementation of one PACE training step, for benchmarks.

Not part of pace-peft. It is written from the paper's equations (and the fixtures' README) in the strongest
form the official PACE code runs: timm's ViT layout, LoRA-mul + VPT-add adapters on every Linear but the head,
each noisy linear as two GEMMs (W0·x + b0 + z ⊙ adapter(x)), z = 1 + σ·ε per sample and output channel with σ
falling linearly with depth from block 1, the batch duplicated with cat([x, x]), cross-entropy on the first
copy + λ·mean Σ (f1 − f2)², then torch.optim.AdamW. Wherever no noise is applied (the baseline step, evaluation,
and the blocks before the first noisy one in a PACE step) the adapter is merged into one GEMM on
W0 + ΔW with the shifted bias, as the official code does with merge_training and merge_validation. The
configuration key `merge: false` keeps every adapter unmerged (the weaker form earlier measurements used, kept
only to reproduce them).

It runs as a worker for bench/cpu.ts and bench/device.ts: the first stdin line is a JSON configuration, then
each line is a command (`pace`, `baseline`, `eval` or `quit`); for each it runs one step and prints a JSON line
with the milliseconds it took, so both implementations can be timed alternately in one invocation.

Configuration beyond the model's sizes: `device` ('cpu' or 'cuda'), `precision` ('fp32': float32 with TF32 off,
as the paper's code runs; 'bf16': torch.autocast to bfloat16, as a strong PyTorch user would), `timm` (a
timm model name, e.g. swin_base_patch4_window7_224, whose Linears inside the blocks get the same adapters; its
noise is drawn per leading row of each linear's input, per window in Swin: the same work as per sample), and
`compile` (a torch.compile mode, e.g. 'max-autotune': the model is compiled, the optimizer is torch's fused
AdamW, and the first calls of each command, which compile, run before `ready`, whose `compileSeconds` says how
long each took; torch >= 2 only; `commands`, a list, names the commands to compile when not all three).

`profile <command> <steps> <path>` runs the command's steps under torch.profiler (CPU and, on a GPU, CUDA
activity) and writes their Chrome trace to the path (bench/profile-summary.ts reads it).

Besides the timed commands, `peak` answers the most bytes the CUDA allocator held in tensors at once since the
worker started (torch.cuda.max_memory_allocated: the model, its optimizer state and the largest step), null on
the CPU.
"""

import contextlib
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class NoiseState:
    """The σ of each linear and whether the current forward is a noisy (PACE) one."""

    def __init__(self):
        self.active = False


class AdaptedLinear(nn.Module):
    """A frozen Linear with a LoRA-mul + VPT-add adapter whose output PACE multiplies by z = 1 + σ·ε."""

    def __init__(self, in_features, out_features, rank, sigma, noise, bias=True, merge=True):
        super().__init__()
        self.merge = merge
        self.weight = nn.Parameter(torch.empty(out_features, in_features).normal_(0, 0.02), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self.delta_W_down = nn.Parameter(torch.zeros(out_features, rank))
        self.delta_W_up = nn.Parameter(nn.init.xavier_uniform_(torch.empty(rank, in_features)))
        self.delta_b = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.delta_prompt_down = nn.Parameter(torch.zeros(in_features, rank))
        self.delta_prompt_up = nn.Parameter(nn.init.xavier_uniform_(torch.empty(rank, 1)))
        self.sigma = sigma
        self.noise = noise

    def terms(self):
        delta_weight = self.weight * (self.delta_W_down @ self.delta_W_up)
        shift = (self.weight @ (self.delta_prompt_down @ self.delta_prompt_up)).squeeze(1)
        if self.bias is not None:
            shift = shift + self.bias * self.delta_b
        return delta_weight, shift

    def adapter(self, x):
        return F.linear(x, *self.terms())

    def forward(self, x):
        if self.merge and not (self.noise.active and self.sigma > 0):
            delta_weight, shift = self.terms()
            bias = shift if self.bias is None else self.bias + shift
            return F.linear(x, self.weight + delta_weight, bias)
        frozen = F.linear(x, self.weight, self.bias)
        adapted = self.adapter(x)
        if self.noise.active and self.sigma > 0:
            shape = [x.shape[0]] + [1] * (x.dim() - 2) + [adapted.shape[-1]]
            adapted = adapted * (1 + self.sigma * torch.randn(shape, device=x.device, dtype=adapted.dtype))
        return frozen + adapted


def drop_path(x, rate, training, copies):
    if rate == 0 or not training:
        return x
    keep = 1 - rate
    mask = x.new_empty((x.shape[0] // copies,) + (1,) * (x.dim() - 1)).bernoulli_(keep).div_(keep)
    if copies > 1:  # the PACE step: the official SharableDropPath divides the mask by its mean over the batch
        mask = mask / (mask.mean() + 1e-12)
    return x * mask.repeat((copies,) + (1,) * (x.dim() - 1))


class Block(nn.Module):
    def __init__(self, dim, heads, rank, sigma, noise, drop_path_rate, merge):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = AdaptedLinear(dim, 3 * dim, rank, sigma, noise, merge=merge)
        self.proj = AdaptedLinear(dim, dim, rank, sigma, noise, merge=merge)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = AdaptedLinear(dim, 4 * dim, rank, sigma, noise, merge=merge)
        self.fc2 = AdaptedLinear(4 * dim, dim, rank, sigma, noise, merge=merge)
        self.drop_path_rate = drop_path_rate
        self.copies = 1

    def attention(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

    def forward(self, x):
        x = x + drop_path(self.attention(self.norm1(x)), self.drop_path_rate, self.training, self.copies)
        mlp = self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return x + drop_path(mlp, self.drop_path_rate, self.training, self.copies)


class VisionTransformer(nn.Module):
    def __init__(self, img_size, patch, dim, depth, heads, classes, rank, sigma, drop_path_rate, merge,
                 block_start=1):
        super().__init__()
        self.noise = NoiseState()
        units = depth + 1  # the blocks, then the head
        n = units - block_start
        sigmas = [0.0 if k < block_start else sigma * (n - (k - block_start)) / n for k in range(units)]
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (img_size // patch) ** 2 + 1, dim) * 0.02)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            [Block(dim, heads, rank, sigmas[i], self.noise, rates[i], merge) for i in range(depth)]
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)
        self.head_sigma = sigmas[-1]
        for name, parameter in self.named_parameters():
            if not (name.startswith("head.") or ".delta_" in name):
                parameter.requires_grad_(False)

    def forward(self, images):
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.norm(x)[:, 0])
        if self.noise.active and self.head_sigma > 0:
            logits = logits * (1 + self.head_sigma * torch.randn_like(logits))
        return logits

    def set_copies(self, copies):
        for block in self.blocks:
            block.copies = copies


class TimmAdapted(nn.Module):
    """A timm model whose Linears inside the blocks carry the adapters; only the adapters and head train."""

    def __init__(self, name, classes, rank, sigma, drop_path_rate, merge):
        super().__init__()
        import timm

        self.noise = NoiseState()
        self.model = timm.create_model(name, pretrained=False, num_classes=classes, drop_path_rate=drop_path_rate)
        for module_name, module in list(self.model.named_modules()):
            for child_name, child in list(module.named_children()):
                full = f"{module_name}.{child_name}" if module_name else child_name
                if isinstance(child, nn.Linear) and not full.startswith("head"):
                    adapted = AdaptedLinear(child.in_features, child.out_features, rank, sigma, self.noise,
                                            bias=child.bias is not None, merge=merge)
                    with torch.no_grad():
                        adapted.weight.copy_(child.weight)
                        if child.bias is not None:
                            adapted.bias.copy_(child.bias)
                    setattr(module, child_name, adapted)
        for name_, parameter in self.named_parameters():
            if not (".head." in f".{name_}" or ".delta_" in name_):
                parameter.requires_grad_(False)

    def forward(self, images):
        return self.model(images)

    def set_copies(self, copies):
        pass  # timm's DropPath draws its own mask per sample


def autocast(config):
    if config.get("precision", "fp32") == "bf16":
        return torch.autocast(config.get("device", "cpu"), dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pace_step(model, optimizer, images, targets, lam, config):
    model.train()
    optimizer.zero_grad()
    model.noise.active = True
    model.set_copies(2)
    with autocast(config):
        both = model(torch.cat([images, images])).float()
    model.noise.active = False
    model.set_copies(1)
    logits1, logits2 = both.chunk(2)
    loss = F.cross_entropy(logits1, targets) + lam * (logits1 - logits2).pow(2).sum(1).mean()
    loss.backward()
    optimizer.step()
    return loss.item()


def baseline_step(model, optimizer, images, targets, config):
    model.train()
    optimizer.zero_grad()
    with autocast(config):
        logits = model(images).float()
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def evaluate(model, images, config):
    # Evaluation as the official code runs it: no noise, adapters merged (unless `merge: false`).
    model.eval()
    with autocast(config):
        return model(images).argmax(1).sum().item()


def run_command(command, model, optimizer, images, targets, eval_images, config):
    if command == "pace":
        return pace_step(model, optimizer, images, targets, config["lambda"], config)
    if command == "baseline":
        return baseline_step(model, optimizer, images, targets, config)
    return evaluate(model, eval_images, config)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bf16_gemm_tflops(device, size=8192, repeats=10):
    """The card's bf16 matrix rate on random data (the floor the device benchmark compares against)."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def main():
    config = json.loads(sys.stdin.readline())
    torch.set_num_threads(config["threads"])
    torch.manual_seed(config.get("seed", 0))
    device = torch.device(config.get("device", "cpu"))
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means IEEE float32 here, as the reference runs
    torch.backends.cudnn.allow_tf32 = False
    merge = config.get("merge", True)
    if config.get("timm"):
        model = TimmAdapted(config["timm"], config["numClasses"], config["rank"], config["sigma"],
                            config["dropPathRate"], merge)
    else:
        model = VisionTransformer(
            config["imgSize"], config["patchSize"], config["embedDim"], config["depth"], config["numHeads"],
            config["numClasses"], config["rank"], config["sigma"], config["dropPathRate"], merge,
        )
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    compile_mode = config.get("compile")
    if compile_mode and not hasattr(torch, "compile"):
        print(json.dumps({"error": f"torch {torch.__version__} has no torch.compile"}), flush=True)
        return
    fused = {"fused": True} if compile_mode and device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=1e-4, **fused)
    batch = config["batchSize"]
    images = torch.randn(batch, 3, config["imgSize"], config["imgSize"], device=device)
    targets = torch.randint(0, config["numClasses"], (batch,), device=device)
    eval_images = torch.randn(config["evalBatchSize"], 3, config["imgSize"], config["imgSize"], device=device)
    compile_seconds = {}
    if compile_mode:
        runner = torch.compile(model, mode=compile_mode)
        runner.noise, runner.set_copies = model.noise, model.set_copies
        model = runner
        for command in config.get("commands") or ("pace", "baseline", "eval"):  # only those to be timed
            start = time.perf_counter()
            for _ in range(3):  # the first call compiles; the next ones record CUDA graphs where the mode does
                run_command(command, model, optimizer, images, targets, eval_images, config)
            synchronize(device)
            compile_seconds[command] = round(time.perf_counter() - start, 1)
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "trainable": sum(p.numel() for p in trainable), "merge": merge, "compile": compile_mode,
                      "compileSeconds": compile_seconds}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command == "gemm":
            print(json.dumps({"command": "gemm", "tflops": bf16_gemm_tflops(device)}), flush=True)
            continue
        if command == "peak":
            peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
            print(json.dumps({"command": "peak", "bytes": peak}), flush=True)
            continue
        if command.startswith("profile "):
            _, profiled, steps, path = command.split(" ", 3)
            activities = [torch.profiler.ProfilerActivity.CPU]
            if device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            synchronize(device)
            with torch.profiler.profile(activities=activities) as profiler:
                for _ in range(int(steps)):
                    run_command(profiled, model, optimizer, images, targets, eval_images, config)
                synchronize(device)
            profiler.export_chrome_trace(path)
            print(json.dumps({"command": "profile", "trace": path}), flush=True)
            continue
        if command not in ("pace", "baseline", "eval"):
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
            continue
        synchronize(device)
        start = time.perf_counter()
        value = run_command(command, model, optimizer, images, targets, eval_images, config)
        elapsed = (time.perf_counter() - start) * 1000
        if isinstance(value, float) and not math.isfinite(value):
            print(json.dumps({"error": f"{command} produced a non-finite loss"}), flush=True)
            continue
        print(json.dumps({"command": command, "ms": elapsed}), flush=True)


if __name__ == "__main__":
    main()
