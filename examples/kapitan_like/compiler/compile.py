"""Compiling targets: every target's parameters rendered through the
templates into compiled/<target>/ (Kubernetes-like YAML manifests, a
params.json, an inventory.yml and a README.md), serially or in a
multiprocessing Pool as kapitan does.
"""
import json
import multiprocessing
import os

from . import templating, yamlish
from .inventory import SEED_DIR

_TEMPLATES = {}  # name -> Template, loaded once per process

# Rendered outputs by target name, "so that a later compile in the same
# process could skip unchanged targets" -- but nothing ever reads it or
# evicts from it. DELIBERATE LEAK (for the memtrace demo): every compiled
# target's rendered manifests stay here until the process ends, about 14 kB
# a target. With --parallel N it grows in the worker processes instead.
_RENDER_CACHE = {}


def templates():
    """The parsed templates, by file name without .tmpl."""
    if not _TEMPLATES:
        tdir = os.path.join(SEED_DIR, "templates")
        for entry in sorted(os.listdir(tdir)):
            with open(os.path.join(tdir, entry), encoding="utf-8") as f:
                _TEMPLATES[entry[:-5]] = templating.Template(f.read(), entry)
    return _TEMPLATES


def render_target(name, params):
    """Every output file of one target: {relative path: text}."""
    tpl = templates()
    outputs = {}
    labels = dict(params.get("labels") or {})
    for comp_name, component in sorted(params.get("components", {}).items()):
        context = dict(params, name=f"{name}-{comp_name}", component=component, labels=labels)
        outputs[f"manifests/{comp_name}-deployment.yml"] = tpl["deployment.yml"].render(context)
        if component.get("port"):
            outputs[f"manifests/{comp_name}-service.yml"] = tpl["service.yml"].render(context)
    outputs["manifests/features-configmap.yml"] = tpl["configmap.yml"].render(params)
    outputs["README.md"] = tpl["README.md"].render(params)
    outputs["params.json"] = json.dumps(params, indent=2, sort_keys=True) + "\n"
    outputs["inventory.yml"] = yamlish.dumps(params)
    return outputs


def compile_target(job):
    """Renders and writes one target. job = (name, params, output dir).
    Returns (name, number of files, bytes written). Runs in Pool workers."""
    name, params, output = job
    outputs = render_target(name, params)
    manifests = [text for rel, text in outputs.items() if rel.startswith("manifests/")]
    _RENDER_CACHE[name] = "\n".join(manifests).encode("utf-8")
    written = 0
    for rel, text in outputs.items():
        path = os.path.join(output, name, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            written += f.write(text)
    return name, len(outputs), written


def compile_all(targets, output, parallel=0):
    """Compiles every target, in a Pool of `parallel` processes when parallel
    > 1, else in this process. Returns the list of compile_target results."""
    jobs = [(t.name, t.params, output) for t in targets]
    if parallel <= 1:
        return [compile_target(job) for job in jobs]
    with multiprocessing.Pool(parallel) as pool:
        return list(pool.imap_unordered(compile_target, jobs, chunksize=8))


def cache_bytes():
    """How much the render cache holds in this process."""
    return sum(len(v) for v in _RENDER_CACHE.values())
