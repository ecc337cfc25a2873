# The last steps, typed by hand after capture-3 (same daemon, same containers): three more containers, then
# `running`, `net-none` and `net-host` stopped and captured again, then `running` started again.
D="/usr/bin/docker -H unix:///tmp/dref/d.sock"
C="curl -sS --unix-socket /tmp/dref/d.sock"
j() { python3 -c 'import json,sys; d=sys.stdin.read(); print(json.dumps(json.loads(d), indent=2))'; }
$D run -d --name none-expose --network none --expose 90 bb:1 /bin/busybox sleep 3600
$D run -d --name host-publish --network host -p 8085:80 --expose 91 bb:1 /bin/busybox sleep 3600  # CLI: "WARNING: Published ports are discarded when using host network mode"
$D create --name created-publish-all -P --expose 90 bb:1 /bin/busybox sleep 3600
for n in none-expose host-publish created-publish-all; do for v in 1.41 1.24; do $C "http://d/v$v/containers/$n/json" | j > inspect-$n-v$v.json; done; done
$D stop -t 1 running; $D stop -t 1 net-none; $D stop -t 1 net-host
for n in running net-none net-host; do for v in 1.41 1.24; do $C "http://d/v$v/containers/$n/json" | j > inspect-$n-stopped-v$v.json; done; done
for cli in /usr/bin/docker /usr/local/bin/docker; do c=$([ $cli = /usr/bin/docker ] && echo 20 || echo 28); { $cli -H unix:///tmp/dref/d.sock port running; echo "exit=$?"; } > cli$c-port-running-stopped.txt 2>&1; done
for v in 1.41 1.24; do $C "http://d/v$v/containers/json?all=1" | j > containers-list-all-after-stop-v$v.json; done
$D start running
iptables-save > host-iptables-save-while-running.txt; ip6tables-save > host-ip6tables-save-while-running.txt
ip addr show docker0 > host-ip-addr-docker0.txt
ss -ltnup | grep -E "docker-proxy|8080|32770|9090" > host-listeners-docker-proxy.txt
$C http://d/v1.41/containers/running/json | j > inspect-running-restarted-v1.41.json
$C http://d/v1.41/networks/bridge | j > network-bridge-after-stops-v1.41.json
$C "http://d/v1.41/containers/json?all=1" | j > containers-list-all-final-v1.41.json
