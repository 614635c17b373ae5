"""The inventory: classes and targets, merged and resolved the way kapitan's
reclass does it, plus a generator for a deterministic inventory of any size.

Layout of an inventory directory (as in kapitan)::

    classes/common.yml, classes/env/production.yml, classes/component/web.yml ...
    targets/<target>.yml      classes: [...] and parameters: {...}

A target's parameters are its classes' parameters deep-merged in order
(mappings merge, lists extend, scalars override), then its own; then every
``${path:to:value}`` reference is replaced by the value it names.
"""
import hashlib
import os
import random
import re
import shutil

from . import yamlish

SEED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed")
_REF = re.compile(r"\$\{([^}]+)\}")
_MARKER = ".generated"

ENVIRONMENTS = ("production", "staging", "development")
COMPONENTS = ("web", "api", "worker", "cache", "db")
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne")


class InventoryError(ValueError):
    """A class that does not exist or a reference that does not resolve."""


class Target:
    """One compiled unit: its name, classes and resolved parameters."""

    def __init__(self, name, classes, params):
        self.name = name
        self.classes = classes
        self.params = params
        self.source = "+".join(classes)  # where the parameters came from

    def flat(self):
        """Every leaf parameter as (dotted path, value), in key order."""
        out = []
        _flatten(self.params, "", out)
        return out


def _flatten(value, prefix, out):
    if isinstance(value, dict) and value:
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out.append((prefix, value))


# ---- generating --------------------------------------------------------------

def _target_document(index, rng):
    """The YAML-subset document of generated target number `index`."""
    tenant = f"{TENANTS[index % len(TENANTS)]}-{index:03d}"
    env = ENVIRONMENTS[rng.randrange(len(ENVIRONMENTS))]
    name = f"{tenant}-{env}"
    chosen = rng.sample(COMPONENTS, rng.randint(2, len(COMPONENTS)))
    components = {}
    for comp in chosen:
        extra = {f"{comp.upper()}_SETTING_{k:02d}": f"value-{rng.randrange(10**6):06d}"
                 for k in range(rng.randint(15, 35))}
        components[comp] = {"replicas": rng.randint(1, 8), "env": extra}
    features = {f"feature_{k:03d}": rng.choice([True, False, "canary", "beta"])
                for k in range(rng.randint(60, 140))}
    doc = {
        "classes": ["common", f"env.{env}"] + [f"component.{c}" for c in chosen],
        "parameters": {
            "target_name": name,
            "tenant": tenant,
            "components": components,
            "features": features,
            "labels": {"tenant": tenant, "cost-center": f"cc-{rng.randrange(100, 999)}"},
        },
    }
    return name, doc


def generate(dest, count, seed=7):
    """Writes a deterministic inventory of `count` targets into dest (the seed
    classes are copied, the targets generated). Returns the target names."""
    classes = os.path.join(dest, "classes")
    targets = os.path.join(dest, "targets")
    shutil.rmtree(classes, ignore_errors=True)
    shutil.rmtree(targets, ignore_errors=True)
    shutil.copytree(os.path.join(SEED_DIR, "classes"), classes)
    os.makedirs(targets)
    rng = random.Random(seed)
    names = []
    for index in range(count):
        name, doc = _target_document(index, rng)
        with open(os.path.join(targets, name + ".yml"), "w", encoding="utf-8") as f:
            f.write(f"# Generated: target {index + 1} of {count} (seed {seed}).\n")
            f.write(yamlish.dumps(doc))
        names.append(name)
    with open(os.path.join(dest, _MARKER), "w", encoding="utf-8") as f:
        f.write(f"{count} {seed}\n")
    return names


def ensure(dest, count, seed=7):
    """Generates the inventory in dest unless the same one is there already.
    Returns True when it had to generate."""
    try:
        with open(os.path.join(dest, _MARKER), encoding="utf-8") as f:
            if f.read().split() == [str(count), str(seed)]:
                return False
    except OSError:
        pass
    generate(dest, count, seed)
    return True


# ---- loading -----------------------------------------------------------------

def _merge(into, other):
    """Deep-merges `other` into `into` (reclass rules), copying containers."""
    for key, value in other.items():
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            _merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            old.extend(_copy(value))
        else:
            into[key] = _copy(value)


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _resolve(value, root, depth=0):
    """`value` with every ${a:b} reference replaced (recursively)."""
    if depth > 16:
        raise InventoryError("reference loop")
    if isinstance(value, dict):
        return {k: _resolve(v, root, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root, depth) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _REF.fullmatch(value)
    if whole:
        return _resolve(_deref(root, whole.group(1)), root, depth + 1)
    return _REF.sub(lambda m: str(_resolve(_deref(root, m.group(1)), root, depth + 1)), value)


def _deref(root, path):
    value = root
    for part in path.split(":"):
        if not isinstance(value, dict) or part not in value:
            raise InventoryError(f"unresolved reference ${{{path}}}")
        value = value[part]
    return value


def load(dest):
    """Reads, merges and resolves every target of the inventory in dest.
    Returns a list of Target, sorted by name."""
    class_cache = {}

    def klass(name):
        if name not in class_cache:
            path = os.path.join(dest, "classes", *name.split(".")) + ".yml"
            if not os.path.exists(path):
                raise InventoryError(f"class {name!r} not found ({path})")
            class_cache[name] = yamlish.load_file(path).get("parameters") or {}
        return class_cache[name]

    targets = []
    tdir = os.path.join(dest, "targets")
    for entry in sorted(os.listdir(tdir)):
        if not entry.endswith(".yml"):
            continue
        doc = yamlish.load_file(os.path.join(tdir, entry))
        params = {}
        for name in doc.get("classes") or []:
            _merge(params, klass(name))
        _merge(params, doc.get("parameters") or {})
        try:
            params = _resolve(params, params)
        except InventoryError as e:
            raise InventoryError(f"{entry}: {e}") from None
        targets.append(Target(entry[:-4], doc.get("classes") or [], params))
    return targets


# ---- the global inventory ------------------------------------------------------

def inventory_digest(targets):
    """A hash of the whole resolved inventory, as kapitan's compile cache keeps
    to know whether anything changed.

    DELIBERATE PEAK (for the memtrace demo): the whole inventory is rendered
    into one text in one go -- every parameter of every target on its own
    line, all the lines held in a list, then joined -- tens of MB for a few
    hundred targets, all dropped again a moment later. Feeding the hash one
    target at a time would need a few kB."""
    text = "\n".join([f"{t.name}:{path} = {value!r}  # {t.source}"
                      for t in targets for path, value in t.flat()])
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return digest, len(text)
