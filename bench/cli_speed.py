"""Wall time of the report commands (goal: each under 10 s on the 2-core machine)."""
import subprocess
import sys
import time

CASES = [["compare", "resnet34"], ["compare", "vgg16"], ["topology", "resnet32", "--topology", "all"]]


def main() -> int:
    print(f"{'command':<40} {'seconds':>8}  goal < 10 s")
    for args in CASES:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "flow.cli", *args], check=True, capture_output=True)
        dt = time.perf_counter() - t
        print(f"{'pimgen ' + ' '.join(args):<40} {dt:8.2f}  {'met' if dt < 10 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
