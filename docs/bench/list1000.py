import io, os, subprocess, sys, tarfile, time, statistics, concurrent.futures as cf
import docker
A, B = sys.argv[1], sys.argv[2]   # dockwright host, dockerd host
N = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
def tar_for(i):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = f"layer {i % 100}\n".encode() * 10
        ti = tarfile.TarInfo(f"f{i%100}.txt"); ti.size = len(data); ti.mtime = 1700000000
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()
def populate(host):
    c = docker.APIClient(base_url=host, version="1.41", timeout=300)
    have = len(c.images(all=True))
    def one(i):
        c2 = docker.APIClient(base_url=host, version="1.41", timeout=300)
        c2.import_image(src=io.BytesIO(tar_for(i)), repository=f"bench/list", tag=f"{i:04d}",
                        changes=[f"LABEL com.dockwright.bench=1 n={i}"])
    t = time.time()
    with cf.ThreadPoolExecutor(4) as ex:
        list(ex.map(one, range(have, N)))
    print(host, "populated in", round(time.time() - t, 1), "s", file=sys.stderr)
for h in (A, B):
    populate(h)
env = {**os.environ, "DOCKER_CONFIG": "/tmp/bench-ref/cfg"}
os.makedirs("/tmp/bench-ref/cfg", exist_ok=True); open("/tmp/bench-ref/cfg/config.json", "w").write("{}")
def run(host, *args):
    t = time.perf_counter()
    p = subprocess.run(["/usr/local/bin/docker", "-H", host, *args], capture_output=True, env=env)
    dt = time.perf_counter() - t
    assert p.returncode == 0, p.stderr
    return dt, len(p.stdout.splitlines())
for args in (("images",), ("images", "--format", "json")):
    ta, tb, ratios = [], [], []
    for i in range(20):
        order = (A, B) if i % 2 == 0 else (B, A)
        r = {}
        for h in order:
            r[h] = run(h, *args)
        ta.append(r[A][0]); tb.append(r[B][0]); ratios.append(r[A][0] / r[B][0])
    print(" ".join(args), f"rows={r[A][1]}/{r[B][1]}", f"dockwright median {statistics.median(ta)*1000:.1f} ms",
          f"dockerd median {statistics.median(tb)*1000:.1f} ms", f"ratio {statistics.median(ratios):.2f}")
