#!/usr/bin/env python3
"""`make soak`: SOAK_FRAMES frames through ocdedit in gst-launch-1.0 with a model, RSS of the process every SOAK_EVERY.

A videotestsrc ball (SOAK_SIZE² RGB, 25 fps) and its GRAY8 mask go through ocdedit (SOAK_MODEL, default the tiny random
SD 1.x of the tests, Tests/Fixtures/tiny-sd1; processing-size 64, SOAK_STEPS DDIM steps, windows of 8) into an
identity that reports every frame and a fakesink. VmRSS of gst-launch-1.0 (from /proc/PID/status) is read each
SOAK_EVERY output frames and at the last one. Fails if frames out differ from frames in, gst-launch fails, or the RSS
at the last frame differs from the RSS at frame SOAK_EVERY (after warm-up: model loaded, buffers pooled) by more than
SOAK_TOLERANCE percent. Extra arguments are ocdedit properties (e.g. mode=tokenflow).
Env: SOAK_FRAMES (10000), SOAK_EVERY (500), SOAK_SIZE (64), SOAK_MODEL, SOAK_STEPS (20, the element's default),
     SOAK_TOLERANCE (5), SOAK_PLUGIN_DIR (Plugin/lib),
     SOAK_LOG (a CSV of frame, seconds, VmRSS kB, threads; default out/soak/rss.csv).
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env(name, default):
    return os.environ.get(name) or default


def status(pid):
    """(VmRSS in kB, threads) of `pid` from /proc/PID/status ((None, None) once the process is gone)."""
    rss = threads = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        pass
    return rss, threads


def main():
    frames = int(env("SOAK_FRAMES", "10000"))
    every = int(env("SOAK_EVERY", "500"))
    size = int(env("SOAK_SIZE", "64"))
    steps = int(env("SOAK_STEPS", "20"))
    tolerance = float(env("SOAK_TOLERANCE", "5"))
    model = env("SOAK_MODEL", os.path.join(ROOT, "Tests/Fixtures/tiny-sd1"))
    plugin_dir = env("SOAK_PLUGIN_DIR", os.path.join(ROOT, "Plugin/lib"))
    log_path = env("SOAK_LOG", os.path.join(ROOT, "out/soak/rss.csv"))
    if not os.path.exists(os.path.join(plugin_dir, "libgstocdedit.so")):
        sys.exit(f"soak: no libgstocdedit.so in {plugin_dir} (run `make build`)")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    caps = f"video/x-raw,format=RGB,width={size},height={size},framerate=25/1"
    mask_caps = f"video/x-raw,format=GRAY8,width={size},height={size},framerate=25/1"
    pipeline = [
        "videotestsrc", f"num-buffers={frames}", "pattern=ball", "!", caps, "!",
        "ocdedit", "name=e", f"model={model}", "prompt=a blue ball", "source-prompt=a white ball",
        f"steps={steps}", "processing-size=64", "window-size=8", *sys.argv[1:], "!",
        "identity", "name=soakcount", "silent=false", "!", "fakesink", "sync=false",
        "videotestsrc", f"num-buffers={frames}", "pattern=ball", "!", mask_caps, "!", "e.mask",
    ]
    environ = dict(os.environ)
    environ["GST_PLUGIN_PATH"] = plugin_dir
    registry = tempfile.NamedTemporaryFile(prefix="ocdedit-soak-registry-", suffix=".bin", delete=False)
    registry.close()
    environ["GST_REGISTRY"] = registry.name
    print(f"soak: {frames} frames {size}x{size}, model {model}, steps {steps}, RSS every {every} frames",
          flush=True)
    start = time.time()
    proc = subprocess.Popen(["stdbuf", "-oL", "gst-launch-1.0", "-v", *pipeline], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=environ, text=True, errors="replace")
    count = 0
    samples = []  # (frame, seconds, rss kB)
    errors = []
    with open(log_path, "w") as log:
        log.write("frame,seconds,vm_rss_kb,threads\n")
        for line in proc.stdout:
            if "soakcount: last-message = chain" in line:
                count += 1
                if count % every == 0 or count == frames:
                    rss, threads = status(proc.pid)
                    seconds = time.time() - start
                    samples.append((count, seconds, rss))
                    log.write(f"{count},{seconds:.1f},{rss},{threads}\n")
                    log.flush()
                    print(f"soak: frame {count:6d}  {seconds:8.1f} s  VmRSS {rss} kB  threads {threads}", flush=True)
            elif "ERROR" in line or "WARNING" in line or "CRITICAL" in line:
                errors.append(line.rstrip())
    rc = proc.wait()
    os.unlink(registry.name)
    elapsed = time.time() - start
    for e in errors[:10]:
        print("soak: gst-launch said:", e)
    failed = False
    if rc != 0:
        print(f"soak: FAILED: gst-launch-1.0 exited with {rc}")
        failed = True
    if count != frames:
        print(f"soak: FAILED: {count} frames out for {frames} in")
        failed = True
    first = next((s for s in samples if s[0] == every), None)
    last = samples[-1] if samples else None
    print(f"soak: {count} frames in {elapsed:.0f} s ({1000 * elapsed / max(count, 1):.0f} ms a frame)")
    if first and last and first[2] and last[2]:
        change = 100.0 * (last[2] - first[2]) / first[2]
        if first is not last and len(samples) > 1:
            rate = (last[1] - first[1]) / (last[0] - first[0])
            print(f"soak: {1000 * rate:.0f} ms a frame after frame {every}")
        print(f"soak: VmRSS at frame {first[0]}: {first[2]} kB, at frame {last[0]}: {last[2]} kB "
              f"({change:+.2f} %, limit ±{tolerance:g} %)")
        if abs(change) > tolerance:
            print("soak: FAILED: memory is not flat")
            failed = True
    else:
        print(f"soak: FAILED: no RSS sample at frame {every} and at the end")
        failed = True
    print(f"soak: RSS log {log_path}")
    print("soak: FAILED" if failed else "soak: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
