D="/usr/bin/docker -H unix:///tmp/dref/d.sock"
D28="/usr/local/bin/docker -H unix:///tmp/dref/d.sock"
C="curl -sS --unix-socket /tmp/dref/d.sock"
O=/tmp/dref/cap
cd $O
j() { python3 -c 'import json,sys; d=sys.stdin.read(); print(json.dumps(json.loads(d), indent=2))'; }
raw() { # raw url file : keeps status and headers too
  curl -sS -i --unix-socket /tmp/dref/d.sock "http://d$1" > "$2"
}
for v in 1.41 1.24; do
  for n in "$@"; do
    $C "http://d/v$v/containers/$n/json" | j > inspect-$n-v$v.json
  done
done
