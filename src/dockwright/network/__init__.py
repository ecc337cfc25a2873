"""Container networking: dockerd's default bridge network as host mechanisms (issue 12).

    ipam     which subnet and gateway the default bridge gets (dockerd's ``--bip``, ``--fixed-cidr``,
             ``--default-address-pools`` and its default pools, skipping what the host already routes), and the
             persistent allocator of container addresses within it; MAC addresses
    bridge   the kernel side, through iproute2's ``ip``: the bridge device (name, address, MTU, up) and a veth
             pair per container, one end on the bridge, the other moved into the container's network
             namespace as ``eth0`` with its address, MAC, MTU and default route

Neither module knows of containers, the engine or the API: they take names, paths and addresses and return typed
values. NAT, published ports, DNS files and the ``/networks`` API come in later slices.
"""

from __future__ import annotations
