"""The real `tlkit` CLI with test hooks, for tests that must act at a known point of a run (never after a sleep).

    python hooked_cli.py HOOKS finetune DATA --out RUN ...

HOOKS is a comma-separated list (or "-" for none) of ACTION@POINT:
  ACTION  hold: print "HOLD <point>" and block until killed
          fill: fill the file system holding --out, print "FILLED <sha256 of best.h5>" and go on
          mark: print "MARK <point>" and go on
  POINT   epoch:N             after epoch N (1-based, counted as fit counts them) and all its files
          batch:N:B           after batch B of epoch N (mid-epoch)
          replace:NAME:K      the K-th atomic write to a file named NAME, its temporary fully written
                              but not yet renamed into place
          features            when the base's features start being cached (start-up)
"""
import hashlib
import os
import signal
import sys
import threading


def parse(spec):
    hooks = []
    for item in ([] if spec == "-" else spec.split(",")):
        action, point = item.split("@")
        hooks.append((action, point))
    return hooks


def out_folder(argv):
    return argv[argv.index("--out") + 1]


def act(action, point, argv):
    if action == "fill":
        out = out_folder(argv)
        best = os.path.join(out, "best.h5")
        digest = hashlib.sha256(open(best, "rb").read()).hexdigest() if os.path.exists(best) else "none"
        root = os.environ["HOOK_FILL_ROOT"]  # a small file system the test mounted
        with open(os.path.join(root, "filler"), "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        print(f"FILLED {digest}", flush=True)
        return
    print(f"{action.upper()} {point}", flush=True)
    if action == "hold":
        threading.Event().wait()


def install(hooks, argv):
    from tlkit.apps import finetune
    from tlkit.engine.callbacks import Callback

    class Hooks(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            for action, point in hooks:
                if point == f"batch:{self.epoch}:{batch + 1}":
                    act(action, point, argv)

        def on_epoch_end(self, epoch, logs=None):
            for action, point in hooks:
                if point == f"epoch:{epoch + 1}":
                    act(action, point, argv)

    run_callbacks = finetune._run_callbacks
    finetune._run_callbacks = lambda *args: run_callbacks(*args) + [Hooks()]

    compute_features = finetune.compute_features

    def features(*args, **kwargs):
        for action, point in hooks:
            if point == "features":
                act(action, point, argv)
        return compute_features(*args, **kwargs)

    finetune.compute_features = features

    replace = os.replace
    counts = {}

    def hooked_replace(src, dst, *args, **kwargs):
        name = os.path.basename(os.fspath(dst))
        counts[name] = counts.get(name, 0) + 1
        for action, point in hooks:
            if point == f"replace:{name}:{counts[name]}":
                act(action, point, argv)
        return replace(src, dst, *args, **kwargs)

    os.replace = hooked_replace


if __name__ == "__main__":
    # The tests stand in for a user's Ctrl-C: Python leaves SIGINT ignored when the parent started it
    # so (a shell's background job), and then no KeyboardInterrupt would ever come.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    hooks = parse(sys.argv[1])
    argv = sys.argv[2:]
    install(hooks, argv)
    from tlkit.cli import main

    main(argv, prog_name="tlkit")
