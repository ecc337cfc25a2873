set -x
D="/usr/bin/docker -H unix:///tmp/dref/d.sock"
C="curl -sS --unix-socket /tmp/dref/d.sock"
O=/tmp/dref/cap
$D create --name created bb:1 /bin/busybox sleep 3600
$D create --name created-ports -p 127.0.0.1::80 -p 8080:80/udp --expose 90 bb:1 /bin/busybox sleep 3600
$D run -d --name running -p 127.0.0.1::80 -p 8080:80/udp --expose 90 bb:1 /bin/busybox sleep 3600
$D run -d --name publish-all -P --expose 90 --expose 91/udp --expose 5000-5001 bb:1 /bin/busybox sleep 3600
$D run -d --name plain -p 9090:90 bb:1 /bin/busybox sleep 3600
$D run -d --name net-none --network none bb:1 /bin/busybox sleep 3600
$D run -d --name net-host --network host bb:1 /bin/busybox sleep 3600
$D run -d --name add-host --add-host x:host-gateway --add-host y:1.2.3.4 bb:1 /bin/busybox sleep 3600
$D run -d --name dns --dns 9.9.9.9 --dns-search ex.com --dns-opt ndots:2 bb:1 /bin/busybox sleep 3600
$D run -d --name hostname-set --hostname myhost --domainname example.org bb:1 /bin/busybox sleep 3600
$D create --name net-none-created --network none bb:1 /bin/busybox sleep 3600
$D create --name net-host-created --network host bb:1 /bin/busybox sleep 3600
$D run -d --name net-container --network container:plain bb:1 /bin/busybox sleep 3600
