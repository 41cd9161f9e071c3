"""What the latency benchmark prints and writes: the table, the three target ratios, and PNG plots."""

from pathlib import Path


def _find(points, **where):
    return [p for p in points if all(p.get(k) == v for k, v in where.items())]


def _on_gpu(point: dict) -> bool:
    return point["backend"] in ("onnx-cuda", "onnx-tensorrt")


def _remote(point: dict, protocol: str | None = None) -> bool:
    """A point measured through a server's API (gRPC or REST), not in this process."""
    return point["backend"].startswith((protocol,) if protocol else ("grpc", "rest"))


def findings(results: dict, server_backend: str) -> dict:
    """The ratios the targets speak of, each with the points it compares (None where not measured)."""
    points, size = results["points"], min(int(s) for s in results["flops_per_image"])
    out = {}
    # The numpy matmul rate is the CPU's: a share of it means something for CPU backends only.
    onnx = [p for p in points if p["backend"] == "onnx-cpu" and p["batch"] >= 4]
    if onnx:
        best = max(onnx, key=lambda p: p["fraction_of_matmul"])
        out["onnx_fraction_of_matmul_at_batch_4_plus"] = {
            "value": best["fraction_of_matmul"], "point": f"{best['backend']} batch {best['batch']}, {best['size']}²"}
    for batch in (1, 8):
        float32, int8 = (_find(points, backend=b, batch=batch, size=size) for b in ("onnx-cpu", "onnx-int8"))
        if float32 and int8:
            out[f"int8_speedup_batch_{batch}"] = {
                "value": int8[0]["images_per_second"] / float32[0]["images_per_second"],
                "point": f"onnx-int8 {int8[0]['images_per_second']:.2f} img/s over onnx-cpu "
                         f"{float32[0]['images_per_second']:.2f} img/s, {size}²"}
    in_process_name = "savedmodel" if server_backend == "savedmodel" else "onnx-cpu"
    local = _find(points, backend=in_process_name, batch=1, size=size)
    single = {protocol: [p for p in points if _remote(p, protocol) and p["batch"] == 1 and p["clients"] == 1
                         and not p["batching"] and p["size"] == size] for protocol in ("grpc", "rest")}
    remote = single["grpc"]
    if local and remote:
        out["grpc_p50_over_in_process_p50_batch_1"] = {
            "value": remote[0]["p50_ms"] / local[0]["p50_ms"],
            "point": f"{remote[0]['p50_ms']:.1f} ms over {in_process_name} {local[0]['p50_ms']:.1f} ms"}
    if single["rest"] and remote:
        rest = single["rest"][0]
        out["rest_p50_over_grpc_p50_batch_1"] = {
            "value": rest["p50_ms"] / remote[0]["p50_ms"],
            "point": f"{rest['p50_ms']:.1f} ms over {remote[0]['p50_ms']:.1f} ms; the {size}×{size} request is "
                     f"{_json_bytes(size)} bytes of JSON against {3 * size * size} bytes of tensor_content"}
    batched = [p for p in points if _remote(p, "grpc") and p["batching"] and p["clients"] == 8]
    # Against what the server runs: the float model (the INT8 copy is measured in process only).
    at_8 = [p for p in points if not _remote(p) and p["batch"] == 8 and p["size"] == size
            and p["backend"] != "onnx-int8"]
    if batched and at_8:
        best = max(at_8, key=lambda p: p["images_per_second"])
        out["batched_grpc_throughput_over_best_in_process_batch_8"] = {
            "value": batched[0]["images_per_second"] / best["images_per_second"],
            "point": f"{batched[0]['images_per_second']:.2f} img/s (8 clients, batching on) over "
                     f"{best['backend']} {best['images_per_second']:.2f} img/s"}
    return out


def _json_bytes(size: int) -> int:
    """The body of a columnar REST request for one random size×size image, as our REST client sends it."""
    import json

    import numpy as np

    from core import contract
    image = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    return len(json.dumps({"signature_name": contract.SERVING_DEFAULT,
                           "inputs": {contract.UINT8_INPUT: image.tolist()}}))


def _cpu_settings(env: dict) -> str:
    chosen = (env.get("onnx_cpu_settings") or {}).get("chosen")
    if not chosen:
        return ""
    return (f" ONNX Runtime CPU settings, timed here: {chosen['intra_op_threads']} threads, spinning "
            f"{'on' if chosen['spinning'] else 'off'}, optimisation {chosen['optimization']}.")


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [f"Machine: {env['cpu']}, {env['cores']} cores, GPU: {env['gpu'] or 'none'}; TensorFlow "
             f"{env['tensorflow'] or 'not installed'}, ONNX Runtime {env['onnxruntime']}, gRPC {env['grpcio']}. Matrix multiply "
             f"(numpy float32): {results['matmul_gflops_per_second']:.1f} GFLOP/s. Generator: "
             + ", ".join(f"{int(v) / 1e9:.1f} GFLOP per {k}×{k} image" for k, v in results["flops_per_image"].items())
             + "." + _cpu_settings(env), "",
             "| backend | input | batch | clients | server batching | p50 ms | p90 ms | p95 ms | p99 ms | mean ms "
             "| img/s | GFLOP/s | of matmul |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in results["points"]:
        batching = "—" if p["batching"] is None else ("on" if p["batching"] else "off")
        lines.append(f"| {p['backend']} | {p['size']}×{p['size']} | {p['batch']} | {p['clients']} | {batching} | "
                     f"{p['p50_ms']:.1f} | {p['p90_ms']:.1f} | {p['p95_ms']:.1f} | {p['p99_ms']:.1f} | "
                     f"{p['mean_ms']:.1f} | {p['images_per_second']:.2f} | {p['gflops_per_second']:.1f} | "
                     + ("— |" if _on_gpu(p) else f"{100 * p['fraction_of_matmul']:.0f} % |"))
    names = {"onnx_fraction_of_matmul_at_batch_4_plus": "ONNX Runtime at batch ≥ 4, share of the matmul rate",
             "int8_speedup_batch_1": "INT8 / float32 ONNX Runtime CPU images/s at batch 1",
             "int8_speedup_batch_8": "INT8 / float32 ONNX Runtime CPU images/s at batch 8",
             "grpc_p50_over_in_process_p50_batch_1": "gRPC p50 / in-process p50 at batch 1",
             "rest_p50_over_grpc_p50_batch_1": "REST p50 / gRPC p50 at batch 1 (JSON's cost)",
             "batched_grpc_throughput_over_best_in_process_batch_8":
                 "gRPC throughput, 8 clients, batching on / best in-process at batch 8"}
    if results["findings"]:
        lines += ["", "| ratio | value | from |", "|---|---:|---|"]
        for key, item in results["findings"].items():
            value = f"{100 * item['value']:.0f} %" if "fraction" in key or "throughput" in key \
                else f"{item['value']:.2f}×"
            lines.append(f"| {names[key]} | {value} | {item['point']} |")
    return "\n".join(lines)


def plots(results: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    points, paths = results["points"], []
    size = min(int(s) for s in results["flops_per_image"])

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for backend in sorted({p["backend"] for p in points if p["clients"] == 1 and not p["batching"]}):
        series = sorted(_find(points, backend=backend, size=size, clients=1), key=lambda p: p["batch"])
        series = [p for p in series if not p["batching"]]
        if len(series) < 1:
            continue
        batches = [p["batch"] for p in series]
        line, = ax.plot(batches, [p["p50_ms"] for p in series], marker="o", label=f"{backend} p50")
        ax.fill_between(batches, [p["p50_ms"] for p in series], [p["p99_ms"] for p in series],
                        color=line.get_color(), alpha=0.15)
        ax.plot(batches, [p["p99_ms"] for p in series], ls="--", color=line.get_color(), label=f"{backend} p99")
    ax.set(xlabel="batch size", ylabel="latency (ms)", title=f"Latency vs batch, {size}×{size} → "
           f"{4 * size}×{4 * size}")
    paths.append(save_plot(fig, ax, out / "latency_vs_batch.png"))
    if not any(_remote(p) for p in points):
        return paths  # in-process backends only: no concurrency to plot

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for protocol in ("grpc", "rest"):
        for batching in (False, True, None):
            series = sorted([p for p in points if _remote(p, protocol) and p["batch"] == 1
                             and p["batching"] == batching], key=lambda p: p["clients"])
            if series:
                label = {False: "batching off", True: "batching on", None: "external server"}[batching]
                ax.plot([p["clients"] for p in series], [p["images_per_second"] for p in series], marker="o",
                        ls="-" if protocol == "grpc" else "--", label=f"{protocol.upper()}, {label}")
    best = [p for p in points if not _remote(p) and p["size"] == size]
    if best:
        top = max(best, key=lambda p: p["images_per_second"])
        ax.axhline(top["images_per_second"], color="grey", ls=":",
                   label=f"best in-process ({top['backend']}, batch {top['batch']})")
    ax.set(xlabel="concurrent clients (batch 1 each)", ylabel="images / s",
           title="Throughput vs concurrency over gRPC and REST")
    paths.append(save_plot(fig, ax, out / "throughput_vs_concurrency.png"))
    return paths


def save_plot(fig, ax, path: Path) -> Path:
    """Legend, grid, tight layout, 120 dpi PNG; the figure closed. Every benchmark plot ends so."""
    import matplotlib.pyplot as plt
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
