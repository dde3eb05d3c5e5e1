"""Bad command lines: ``ganatomy dissect|context ...`` run in-process through ``core.cli.main``.

A refusal must print exactly one line ``error: ...`` on stderr and exit with status 2; :func:`cli`
checks that and re-raises the refusal (the error class the CLI caught, with the printed line as its
message), so the table checks the line's flag names and fix like any other case. Flags are checked
before any model is loaded; names (model, layer, concept) right after loading, before any work."""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import core
import core.cli
from tests.badcases.common import Case


def cli(*argv: str):
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            core.cli.main(list(argv))
    except SystemExit as e:
        lines = [x for x in err.getvalue().splitlines() if x.strip()]
        assert e.code == 2, f"exit status {e.code} (expected 2); stderr: {err.getvalue()}"
        assert len(lines) == 1 and lines[0].startswith("error: "), f"not one 'error: ' line: {lines}"
        cause = e.__context__
        assert isinstance(cause, core.GanatomyError), f"refused without a GanatomyError: {cause!r}: {lines[0]}"
        raise type(cause)(lines[0]) from None
    raise AssertionError(f"ganatomy {' '.join(argv)} was not refused")


OUT = str(Path(tempfile.gettempdir()) / "ganatomy-badcases-out")    # written only if a case is not refused


def dis(*flags: str):
    return cli("dissect", "--out", OUT, "--no-cache", *flags)


def ctx(*flags: str):
    return cli("context", "--out", OUT, "--concept", "door", *flags)


E = core

CASES = [
    # ---------------------------------------------------------------- dissect: argparse-level
    Case("cli:dissect-samples-not-int", lambda: dis("--samples", "many"), E.ArgumentTypeError,
         ("--samples", "many"), "ganatomy dissect --help"),
    Case("cli:dissect-labeling-unknown", lambda: dis("--labeling", "best"), E.UnknownNameError,
         ("--labeling", "best"), "choose from"),
    Case("cli:dissect-arch-unknown", lambda: dis("--arch", "mygan"), E.UnknownNameError, ("--arch", "mygan"),
         "choose from"),
    Case("cli:dissect-out-missing", lambda: cli("dissect", "--samples", "8"), E.InputError, ("--out",),
         "--help"),
    Case("cli:dissect-unknown-flag", lambda: dis("--colour", "red"), E.InputError, ("--colour",), "--help"),
    Case("cli:command-unknown", lambda: cli("dissekt"), E.UnknownNameError, ("dissekt",), "choose from"),
    Case("cli:iou-threshold-not-a-number", lambda: dis("--iou-threshold", "high"), E.ArgumentTypeError,
         ("--iou-threshold", "high"), "--help"),
    # ---------------------------------------------------------------- dissect: flag values
    Case("cli:dissect-samples-zero", lambda: dis("--samples", "0"), E.InputError, ("--samples", "n_samples"),
         "--samples 2 or more"),
    Case("cli:dissect-samples-negative", lambda: dis("--samples", "-5"), E.InputError, ("--samples",),
         "--samples 2 or more"),
    Case("cli:dissect-samples-huge", lambda: dis("--samples", "1000000000"), E.BudgetError,
         ("--samples", "days"), "lower n_samples"),
    Case("cli:dissect-batch-size-zero", lambda: dis("--batch-size", "0"), E.InputError, ("--batch-size",), ">= 1"),
    Case("cli:dissect-resolution-zero", lambda: dis("--resolution", "0"), E.InputError, ("--resolution",), ">= 1"),
    Case("cli:dissect-resolution-huge", lambda: dis("--layers", "layer4", "--samples", "8", "--resolution", "100000"),
         E.BudgetError, ("resolution", "GB"), "lower resolution"),
    Case("cli:dissect-bins-zero", lambda: dis("--bins", "0"), E.InputError, ("--bins",), ">= 1"),
    Case("cli:dissect-topk-negative", lambda: dis("--topk", "-1"), E.InputError, ("--topk",), ">= 0"),
    Case("cli:dissect-iou-threshold-nan", lambda: dis("--iou-threshold", "nan"), E.InputError,
         ("--iou-threshold", "nan"), "<= 1"),
    Case("cli:dissect-iqr-threshold-above-one", lambda: dis("--iqr-threshold", "2"), E.InputError,
         ("--iqr-threshold",), "<= 1"),
    Case("cli:dissect-pixel-accuracy-above-one", lambda: dis("--pixel-accuracy", "75"), E.InputError,
         ("--pixel-accuracy",), "from 0 to 1"),
    Case("cli:dissect-pixel-accuracy-with-max-iou", lambda: dis("--pixel-accuracy", "0.75", "--labeling", "max-iou"),
         E.InputError, ("--pixel-accuracy", "--labeling reference"), "drop --pixel-accuracy"),
    Case("cli:dissect-exclude-fid-above-nan", lambda: dis("--exclude-fid-above", "nan"), E.InputError,
         ("--exclude-fid-above", "nan"), "finite number"),
    Case("cli:dissect-exclude-fid-above-inf", lambda: dis("--exclude-fid-above", "inf"), E.InputError,
         ("--exclude-fid-above",), "finite number"),
    Case("cli:dissect-fid-samples-too-few", lambda: dis("--exclude-fid-above", "50", "--fid-samples", "10"),
         E.InputError, ("--fid-samples", "20"), "--fid-samples 20 or more"),
    Case("cli:dissect-strip-units-negative", lambda: dis("--strip-units", "-3"), E.InputError, ("--strip-units",),
         ">= 0"),
    Case("cli:dissect-layers-twice", lambda: dis("--layers", "layer4", "layer4"), E.InputError,
         ("--layers", "layer4"), "give each layer once"),
    Case("cli:dissect-device-unknown", lambda: dis("--device", "tpu9"), E.InputError, ("--device", "tpu9"),
         "--device cpu"),
    Case("cli:dissect-out-is-a-file", lambda: cli("dissect", "--out", __file__), E.InputError, ("--out",),
         "new or existing directory"),
    Case("cli:dissect-out-empty", lambda: cli("dissect", "--out", " "), E.InputError, ("--out",),
         "a directory to write to"),
    Case("cli:dissect-out-unwritable", lambda: cli("dissect", "--out", __file__ + "/sub"), E.InputError,
         ("--out", "cannot be written"), "a directory you can write to"),    # said before anything is computed
    # ---------------------------------------------------------------- dissect: names (after loading, before work)
    Case("cli:dissect-model-unknown", lambda: dis("--model", "toyworld/castle", "--samples", "8"), E.InputError,
         ("toyworld/castle",), "toyworld/town"),
    Case("cli:dissect-segmenter-unknown", lambda: dis("--segmenter", "nope", "--samples", "8"), E.InputError,
         ("nope",), "toyworld"),
    Case("cli:dissect-layer-unknown", lambda: dis("--layers", "layer99", "--samples", "8"), E.UnknownNameError,
         ("layer99",), "available layers"),
    # ---------------------------------------------------------------- context
    Case("cli:context-concept-unknown", lambda: cli("context", "--out", OUT, "--concept", "unicorn",
                                                    "--units", "1"), E.UnknownNameError, ("unicorn",),
         "the segmenter knows"),
    Case("cli:context-concept-missing", lambda: cli("context", "--out", OUT), E.InputError,
         ("--concept",), "--help"),
    Case("cli:context-layer-unknown", lambda: ctx("--layer", "layer99", "--units", "1"), E.UnknownNameError,
         ("layer99",), "available layers"),
    Case("cli:context-units-negative", lambda: ctx("--units", "-1"), E.UnitIndexError, ("--units", "-1"),
         "count from 0"),
    Case("cli:context-units-out-of-range", lambda: ctx("--units", "999"), E.UnitIndexError, ("999", "layer4"),
         "valid: 0..255"),
    Case("cli:context-brush-zero", lambda: ctx("--brush", "0"), E.InputError, ("--brush",), ">= 1"),
    Case("cli:context-brush-too-big", lambda: ctx("--brush", "9", "--units", "1"),
         E.InputError, ("--brush", "1 to 8"), "--brush from 1 to 8"),
    Case("cli:context-scale-not-a-number", lambda: ctx("--scale", "big"), E.InputError, ("--scale", "big"),
         "--scale 3 or --scale p99"),
    Case("cli:context-scale-negative", lambda: ctx("--scale", "-3"), E.InputError, ("--scale",), "> 0"),
    Case("cli:context-scale-nan", lambda: ctx("--scale", "nan"), E.InputError, ("--scale",), "> 0"),
    Case("cli:context-images-zero", lambda: ctx("--images", "0"), E.InputError, ("--images", "n_images"), ">= 1"),
    Case("cli:context-n-units-zero", lambda: ctx("--n-units", "0"), E.InputError, ("--n-units",), ">= 1"),
    Case("cli:context-ace-steps-zero", lambda: ctx("--ace-steps", "0"), E.InputError, ("--ace-steps",), ">= 1"),
    Case("cli:context-ace-steps-huge", lambda: ctx("--ace-steps", "100000000"), E.BudgetError,
         ("--ace-steps", "days"), "lower ace_steps"),
    Case("cli:context-k-samples-zero", lambda: ctx("--k-samples", "0"), E.InputError, ("--k-samples",), ">= 1"),
    Case("cli:context-dissect-samples-one", lambda: ctx("--dissect-samples", "1"), E.InputError,
         ("--dissect-samples",), ">= 2"),
    Case("cli:context-ranking-unknown", lambda: ctx("--ranking", "random"), E.UnknownNameError,
         ("--ranking", "random"), "choose from"),
    Case("cli:context-ace-sampling-unknown", lambda: ctx("--ace-sampling", "grid"), E.UnknownNameError,
         ("--ace-sampling", "grid"), "choose from"),
    Case("cli:context-seeds-not-int", lambda: ctx("--seeds", "4.5"), E.ArgumentTypeError, ("--seeds", "4.5"),
         "--help"),
    Case("cli:context-device-unknown", lambda: ctx("--device", "gpu"), E.InputError, ("--device", "gpu"),
         "--device cpu"),
    Case("cli:fetch-name-missing", lambda: cli("fetch"), E.InputError, ("name",), "--help"),
    Case("cli:fetch-unknown-model", lambda: cli("fetch", "progan/moon"), E.InputError, ("progan/moon",),
         "published:"),
    Case("cli:fetch-sha256-short", lambda: cli("fetch", "progan/kitchen", "--sha256", "67f1e16c"), E.InputError,
         ("sha256", "67f1e16c"), "full 64-hex-digit"),
    Case("cli:fetch-prefix-only-untrusted", lambda: cli("fetch", "progan/kitchen"), E.DownloadError,
         ("67f1e16c", "--sha256"), "--trust"),
]
