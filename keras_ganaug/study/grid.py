"""The study's grid: the method grammar, the settings, the cells and how they split into shards.

The one owner of the study's method names: the CLI's --help and every error about --methods read
them from here. Nothing here trains or touches a file (except data_root, which may write the demo
set), so the grid can be planned and checked before TensorFlow loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from keras_ganaug.classify.augment import AUGMENTS as CLASSIFIER_AUGMENTS
from keras_ganaug.classify.selection import DEFAULT_MIN_EPOCHS, DEFAULT_MONITOR
from keras_ganaug.data.images import DEFAULT_VAL_FRACTION
from keras_ganaug.errors import UserError
from keras_ganaug.gans.recipes import DEFAULT_KIMG, DEFAULT_RECIPE
from keras_ganaug.gans.registry import AUGMENT_KINDS, GAN_NAMES

REAL = "real"  # the real images alone: the method every other one is measured against
CLASS_WEIGHTS = "class-weights"
OVERSAMPLE = "oversample"  # repeat real images: the non-GAN twin of a GAN method
GAN_AUGMENTS = tuple(kind for kind in AUGMENT_KINDS if kind != "none")  # method suffixes
ALL_CLASSES = "all-classes"  # method suffix: every class gets the same share of extra images
DEFAULT_N_REAL = "10,50,100,200,250,300,500,all"
# The GAN arm is train_gan.py's default recipe (--gan-recipe auto: the one the recipe search found
# best for the cell's N, docs/results/gan_recipes), so a study measures the GAN a user would get.
DEFAULT_METHODS = f"{REAL},{CLASS_WEIGHTS},{OVERSAMPLE}+classic,dcgan"
DEFAULT_SYNTHETIC = "balance"
DEFAULT_SEEDS = 5
DEFAULT_GAN_KIMG = DEFAULT_KIMG  # train_gan.py's: a study GAN is the one a user would train


def method_grammar() -> str:
    """Every spelling --methods accepts, in words (for --help and for errors)."""
    return (f"{REAL}, {CLASS_WEIGHTS}, {', '.join(CLASSIFIER_AUGMENTS)}, {OVERSAMPLE}, or a GAN "
            f"({', '.join(GAN_NAMES)}) with optional {' / '.join('+' + a for a in GAN_AUGMENTS)}, "
            f"and {' / '.join('+' + a for a in CLASSIFIER_AUGMENTS)} / +{CLASS_WEIGHTS} / "
            f"+{ALL_CLASSES}")


@dataclass(frozen=True)
class Method:
    """What one column of the study adds to the real images."""

    name: str
    gan: str | None = None
    gan_augment: str = "none"
    augment: str = "none"
    class_weights: bool = False
    oversample: bool = False  # repeat real images: the non-GAN twin of a GAN method
    all_classes: bool = False  # extra images for every class, at the minority's share

    @property
    def adds_images(self) -> bool:
        """Whether --synthetic applies: a GAN's fakes or oversampled real images."""
        return self.gan is not None or self.oversample


def parse_method(text: str) -> Method:
    """'dcgan+diffaugment+classic' -> Method; parts: GAN or oversample first, then modifiers."""
    parts = [p.strip() for p in text.strip().split("+") if p.strip()]
    if parts == [REAL]:
        return Method(REAL)
    gan = parts[0] if parts and parts[0] in GAN_NAMES else None
    oversample = bool(parts) and parts[0] == OVERSAMPLE
    rest = parts[1:] if gan or oversample else parts
    modifiers = (*GAN_AUGMENTS, *CLASSIFIER_AUGMENTS, CLASS_WEIGHTS, ALL_CLASSES)
    unknown = [p for p in rest if p not in modifiers]
    if not parts or unknown or len(set(rest)) != len(rest):
        raise UserError(f"--methods {text}: expected {method_grammar()}")
    gan_augments = [p for p in rest if p in GAN_AUGMENTS]
    if len(gan_augments) > 1 or (gan_augments and not gan):
        raise UserError(f"--methods {text}: +diffaugment / +ada follow a GAN name, one at most")
    if ALL_CLASSES in rest and not (gan or oversample):
        raise UserError(f"--methods {text}: +{ALL_CLASSES} follows a GAN name or {OVERSAMPLE}")
    augments = [a for a in CLASSIFIER_AUGMENTS if a in rest]
    method = Method("", gan, gan_augments[0] if gan_augments else "none",
                    "+".join(augments) or "none", CLASS_WEIGHTS in rest, oversample,
                    ALL_CLASSES in rest)
    return replace(method, name=method_name(method))


def method_name(method: Method) -> str:
    """The canonical spelling: GAN or oversample, GAN augmentation, classic, superpixel,
    class-weights, all-classes."""
    parts = [method.gan] if method.gan else ([OVERSAMPLE] if method.oversample else [])
    parts += [method.gan_augment] if method.gan_augment != "none" else []
    parts += method.augment.split("+") if method.augment != "none" else []
    parts += [CLASS_WEIGHTS] if method.class_weights else []
    parts += [ALL_CLASSES] if method.all_classes else []
    return "+".join(parts) or REAL


def parse_synthetic_list(text: str) -> list[str]:
    """'balance,1:1,20%' -> the distinct --synthetic values of the ratio axis, each checked."""
    from keras_ganaug.classify.config import parse_synthetic

    values = [v.strip() for v in text.split(",") if v.strip()]
    for value in values:
        parse_synthetic(value)
    if not values or len(set(values)) != len(values):
        raise UserError(f"--synthetic {text}: expected distinct values, e.g. balance,1:1,20%")
    return values


def parse_n_real(text: str) -> list[int | None]:
    """'10,50,all' -> [10, 50, None]; None is every real minority image."""
    values: list[int | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part == "all":
            values.append(None)
        elif part.isdigit() and int(part) > 0:
            values.append(int(part))
        else:
            raise UserError(f"--n-real {text}: expected positive counts or 'all', comma-separated")
    if not values or len(set(values)) != len(values):
        raise UserError(f"--n-real {text}: expected distinct counts, e.g. 10,50,all")
    return values


def parse_shard(text: str) -> tuple[int, int]:
    """'i/k' -> (i, k) with 0 <= i < k: the i-th of k shards, numbered from 0 like job arrays."""
    parts = text.split("/")
    if len(parts) == 2 and all(p.isdigit() for p in parts) and 0 <= int(parts[0]) < int(parts[1]):
        return int(parts[0]), int(parts[1])
    raise UserError(f"--shard {text}: expected i/k with 0 <= i < k, e.g. 0/4 ... 3/4")


def n_label(n_real: int | None) -> str:
    return "all" if n_real is None else str(n_real)


@dataclass
class StudyConfig:
    """Every setting of a study grid; the fields mirror the command-line flags."""

    data: str | None = None              # None: the built-in demo set
    minority: str | None = None          # None: the class with the fewest train images
    n_real: list[int | None] = field(default_factory=lambda: parse_n_real(DEFAULT_N_REAL))
    methods: list[str] = field(default_factory=lambda: DEFAULT_METHODS.split(","))
    synthetic: list[str] = field(default_factory=lambda: [DEFAULT_SYNTHETIC])  # the ratio axis
    seeds: int = DEFAULT_SEEDS
    model: str = "cnn5"
    weights: str | None = None
    image_size: int = 64
    channels: int = 3
    gan_kimg: float | None = DEFAULT_GAN_KIMG  # the same budget in images shown for every N
    gan_epochs: int | None = None        # instead of gan_kimg: passes over the N images
    gan_recipe: str = DEFAULT_RECIPE     # train_gan.py's --recipe for every GAN cell (auto: by N)
    gan_batch_size: int = 64
    epochs: int = 30
    patience: int = 5
    min_epochs: int = DEFAULT_MIN_EPOCHS
    monitor: str = DEFAULT_MONITOR
    val_fraction: float = DEFAULT_VAL_FRACTION
    drop_test_duplicates: bool = False
    batch_size: int = 32
    vet: bool = False
    quality: bool = True                 # KID, precision/recall, memorization, TSTR per generator
    inception_weights: str | None = None  # local InceptionV3 no-top weights: KID/FID on them too
    out: str = "runs/study"
    shard: tuple[int, int] = (0, 1)
    verbose: int = 1


def data_root(config: StudyConfig) -> str:
    """--data, or the built-in demo set (written on first use) when it is not given."""
    if config.data is not None:
        return config.data
    from keras_ganaug.data.demo import make_demo_data

    return str(make_demo_data())


def arm_name(method: Method, synthetic: str | None) -> str:
    """What the report compares: the method, at its ratio when it adds images."""
    return method.name if synthetic is None else f"{method.name}@{synthetic}"


@dataclass(frozen=True)
class Cell:
    n_real: int | None
    seed: int
    method: Method
    synthetic: str | None = None  # the --synthetic value, for methods that add images

    @property
    def arm(self) -> str:
        return arm_name(self.method, self.synthetic)

    @property
    def cell_id(self) -> str:
        # The classifier's run-name rule, so a ratio like 1:1 can stand in a file name.
        from keras_ganaug.classify.config import synthetic_label

        ratio = "" if self.synthetic is None else f"_{synthetic_label(self.synthetic)}"
        return f"n{n_label(self.n_real)}_s{self.seed}_{self.method.name}{ratio}"

    @property
    def generator_key(self) -> str | None:
        if self.method.gan is None:
            return None
        augment = "" if self.method.gan_augment == "none" else f"-{self.method.gan_augment}"
        return f"{self.method.gan}{augment}_n{n_label(self.n_real)}_s{self.seed}"


def ratios(method: Method, config: StudyConfig) -> list[str | None]:
    """The --synthetic values a method runs at: every one if it adds images, else none."""
    return config.synthetic if method.adds_images else [None]


def plan(config: StudyConfig) -> list[list[Cell]]:
    """Every unit of work in a fixed order: cells that share a generator form one unit."""
    methods = [parse_method(m) for m in config.methods]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise UserError(f"--methods {','.join(config.methods)}: a method is listed twice")
    units: dict[str, list[Cell]] = {}
    for n_real in config.n_real:
        for seed in range(config.seeds):
            for method in methods:
                for synthetic in ratios(method, config):
                    cell = Cell(n_real, seed, method, synthetic)
                    units.setdefault(cell.generator_key or cell.cell_id, []).append(cell)
    return list(units.values())


def declared_comparisons(config: StudyConfig) -> list[tuple[str, str]]:
    """(GAN arm, non-GAN arm) pairs the report tests, fixed by the flags before anything runs:
    every GAN arm against every non-GAN arm, an image-adding baseline (oversample) at the same
    ratio only. Never a "best" baseline picked after seeing the results."""
    methods = [parse_method(m) for m in config.methods]
    arms = [(m, s) for m in methods for s in ratios(m, config)]
    return [(arm_name(gan, gan_ratio), arm_name(base, base_ratio))
            for gan, gan_ratio in arms if gan.gan is not None
            for base, base_ratio in arms
            if base.gan is None and (base_ratio is None or base_ratio == gan_ratio)]


# Rough cost of training a generator, in classifier runs: balances shards, changes no result.
GENERATOR_COST = 3


def unit_cost(unit: list[Cell]) -> int:
    return len(unit) + (GENERATOR_COST if unit[0].generator_key else 0)


def shard_units(units: list[list[Cell]], shard: tuple[int, int]) -> list[list[Cell]]:
    """The units of shard i of k: costliest first to the least-loaded shard (ties: lowest index).

    Deterministic for a given grid, so every shard of a job array computes the same split.
    """
    index, count = shard
    loads = [0] * count
    mine = []
    for position in sorted(range(len(units)), key=lambda i: (-unit_cost(units[i]), i)):
        target = loads.index(min(loads))
        loads[target] += unit_cost(units[position])
        if target == index:
            mine.append(position)
    return [units[i] for i in sorted(mine)]
