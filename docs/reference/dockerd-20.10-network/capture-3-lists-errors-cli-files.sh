D="/usr/bin/docker -H unix:///tmp/dref/d.sock"
D28="/usr/local/bin/docker -H unix:///tmp/dref/d.sock"
C="curl -sS --unix-socket /tmp/dref/d.sock"
O=/tmp/dref/cap
cd $O
j() { python3 -c 'import json,sys; d=sys.stdin.read(); print(json.dumps(json.loads(d), indent=2))'; }
st() { # url file: status line + headers + body
  curl -sS -i --unix-socket /tmp/dref/d.sock "$@"
}
for v in 1.41 1.24; do
  $C "http://d/v$v/containers/json?all=1" | j > containers-list-all-v$v.json
  $C "http://d/v$v/networks" | j > networks-list-v$v.json
  for n in bridge host none; do $C "http://d/v$v/networks/$n" | j > network-$n-v$v.json; done
  $C "http://d/v$v/networks/bridge?verbose=true" | j > network-bridge-verbose-v$v.json
done
st "http://d/v1.41/networks/nope" > err-network-nope-v1.41.http
st "http://d/v1.24/networks/nope" > err-network-nope-v1.24.http
BID=$($D network inspect -f '{{.Id}}' bridge)
st "http://d/v1.41/networks/${BID:0:5}" > network-bridge-by-short-id-v1.41.http
st "http://d/v1.41/networks/$BID" > network-bridge-by-full-id-v1.41.http
st "http://d/v1.41/networks/br" > err-network-partial-name-v1.41.http
st "http://d/v1.41/networks/bridge?scope=swarm" > err-network-bridge-scope-swarm-v1.41.http
st "http://d/v1.41/networks/bridge?scope=local" > network-bridge-scope-local-v1.41.http
st -X DELETE "http://d/v1.41/networks/bridge" > err-network-delete-bridge-v1.41.http
st -X DELETE "http://d/v1.41/networks/host" > err-network-delete-host-v1.41.http
st -X DELETE "http://d/v1.41/networks/none" > err-network-delete-none-v1.41.http
st -X DELETE "http://d/v1.41/networks/nope" > err-network-delete-nope-v1.41.http
st -X POST "http://d/v1.41/networks/prune" > network-prune-v1.41.http
st -X POST -H 'Content-Type: application/json' -d '{"Name":"bridge"}' "http://d/v1.41/networks/create" > err-network-create-bridge-v1.41.http
st -X POST -H 'Content-Type: application/json' -d '{"Name":"host","Driver":"host"}' "http://d/v1.41/networks/create" > err-network-create-host-v1.41.http
st -X POST -H 'Content-Type: application/json' -d '{"Container":"created"}' "http://d/v1.41/networks/host/connect" > err-network-connect-host-v1.41.http
st -X POST -H 'Content-Type: application/json' -d '{"Container":"running"}' "http://d/v1.41/networks/bridge/connect" > err-network-connect-bridge-already-v1.41.http
st -X POST -H 'Content-Type: application/json' -d '{"Container":"net-none"}' "http://d/v1.41/networks/bridge/connect" > err-network-connect-bridge-from-none-v1.41.http
st -X POST -H 'Content-Type: application/json' -d '{"Container":"nope"}' "http://d/v1.41/networks/bridge/connect" > err-network-connect-nope-container-v1.41.http
st -X POST -H 'Content-Type: application/json' -d '{"Container":"net-host"}' "http://d/v1.41/networks/host/disconnect" > err-network-disconnect-host-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22type%22%3A%7B%22custom%22%3Atrue%7D%7D" > networks-list-filter-type-custom-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22type%22%3A%7B%22builtin%22%3Atrue%7D%7D" > networks-list-filter-type-builtin-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22type%22%3A%7B%22bogus%22%3Atrue%7D%7D" > err-networks-list-filter-type-bogus-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22name%22%3A%7B%22bri%22%3Atrue%7D%7D" > networks-list-filter-name-bri-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22driver%22%3A%7B%22null%22%3Atrue%7D%7D" > networks-list-filter-driver-null-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22id%22%3A%7B%22${BID:0:4}%22%3Atrue%7D%7D" > networks-list-filter-id-prefix-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22dangling%22%3A%7B%22true%22%3Atrue%7D%7D" > networks-list-filter-dangling-true-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22dangling%22%3A%7B%22false%22%3Atrue%7D%7D" > networks-list-filter-dangling-false-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22dangling%22%3A%7B%22maybe%22%3Atrue%7D%7D" > err-networks-list-filter-dangling-bogus-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22scope%22%3A%7B%22local%22%3Atrue%7D%7D" > networks-list-filter-scope-local-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22scope%22%3A%7B%22swarm%22%3Atrue%7D%7D" > networks-list-filter-scope-swarm-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22scope%22%3A%7B%22xx%22%3Atrue%7D%7D" > err-networks-list-filter-scope-bogus-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22foo%22%3A%7B%22x%22%3Atrue%7D%7D" > err-networks-list-filter-foo-v1.41.http
st "http://d/v1.41/networks?filters=%7B%22label%22%3A%7B%22a%22%3Atrue%7D%7D" > networks-list-filter-label-a-v1.41.http
$D network ls > cli20-network-ls.txt 2>&1
$D network ls --no-trunc > cli20-network-ls-no-trunc.txt 2>&1
$D28 network ls > cli28-network-ls.txt 2>&1
$D network inspect bridge > cli20-network-inspect-bridge.txt 2>&1
$D28 network inspect bridge > cli28-network-inspect-bridge.txt 2>&1
$D network inspect nope > cli20-network-inspect-nope.txt 2>&1; echo "exit=$?" >> cli20-network-inspect-nope.txt
$D28 network inspect nope > cli28-network-inspect-nope.txt 2>&1; echo "exit=$?" >> cli28-network-inspect-nope.txt
$D network rm bridge > cli20-network-rm-bridge.txt 2>&1; echo "exit=$?" >> cli20-network-rm-bridge.txt
$D network prune -f > cli20-network-prune.txt 2>&1; echo "exit=$?" >> cli20-network-prune.txt
for n in running publish-all plain created-ports created net-host net-none; do
  for cli in 20 28; do
    if [ $cli = 20 ]; then X="$D"; else X="$D28"; fi
    { $X port $n; echo "exit=$?"; } > cli$cli-port-$n.txt 2>&1
  done
done
{ $D port running 80; echo "exit=$?"; } > cli20-port-running-80.txt 2>&1
{ $D port running 80/udp; echo "exit=$?"; } > cli20-port-running-80udp.txt 2>&1
{ $D port running 90; echo "exit=$?"; } > cli20-port-running-90.txt 2>&1
{ $D28 port running 80/tcp; echo "exit=$?"; } > cli28-port-running-80tcp.txt 2>&1
{ $D28 port running 80/udp; echo "exit=$?"; } > cli28-port-running-80udp.txt 2>&1
{ $D28 port running 90; echo "exit=$?"; } > cli28-port-running-90.txt 2>&1
$D ps -a > cli20-ps-a.txt 2>&1
$D28 ps -a > cli28-ps-a.txt 2>&1
$D ps -a --no-trunc --format '{{.Names}}\t{{.Ports}}\t{{.Networks}}' > cli20-ps-ports-networks.txt 2>&1
$D28 ps -a --no-trunc --format '{{.Names}}\t{{.Ports}}\t{{.Networks}}' > cli28-ps-ports-networks.txt 2>&1
for n in running add-host dns hostname-set net-none net-host plain net-container; do
  for f in /etc/hosts /etc/resolv.conf /etc/hostname; do
    $D exec $n /bin/busybox cat $f > in-$n-$(basename $f).txt 2>&1
  done
  $D exec $n /bin/busybox ip addr > in-$n-ip-addr.txt 2>&1
  $D exec $n /bin/busybox ip route > in-$n-ip-route.txt 2>&1
  $D exec $n /bin/busybox hostname > in-$n-hostname-cmd.txt 2>&1
done
cat /etc/resolv.conf > host-etc-resolv.conf.txt
cat /etc/hosts > host-etc-hosts.txt
