"""Container networking: dockerd's built-in networks (the default bridge, host, none) as host mechanisms.

    endpoint  the typed records the engine stores and the API renders (PortMapping, Attachment, NetworkInfo)
    ipam      which subnet and gateway the default bridge gets (dockerd's ``--bip``, ``--fixed-cidr``,
              ``--default-address-pools`` and its default pools, skipping what the host already routes), and the
              persistent allocator of container addresses within it; MAC addresses
    bridge    the kernel side, through iproute2's ``ip``: the bridge device (name, address, MTU, up) and a veth
              pair per container, one end on the bridge, the other moved into the container's network
              namespace as ``eth0`` with its address, MAC, MTU and default route
    netns     network namespaces bound to files, made before the container's process exists
    firewall  the packet filter (an nftables table, or iptables chains): masquerade, forwarding, icc, DNAT
    ports     published ports: dockerd's request rules and the API views of them
    port_allocator  libnetwork's host port allocator (with the bind check of its OSAllocator)
    proxy     the userland proxy (TCP and UDP) for published ports, inside the daemon
    service   the network service the engine uses: set-up at start, connect at container start, release at exit,
              recovery after a restart, the networks as ``GET /networks`` lists them

Only ``service`` knows of containers (by ID); nothing here knows of HTTP.
"""

from __future__ import annotations
