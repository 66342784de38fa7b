"""`calisim chaos`: a seeded random schedule of faults on a lab while workloads are created and
removed, with invariants checked the whole time (reachability per pair, BGP, IPAM consistency,
no leaks, the caller's namespace unchanged).

schedule.py draws the schedule from the seed alone; target.py reaches the lab (its control
socket, its etcd's unix sockets); ledger.py reads IPAM's side of the invariants; engine.py runs
the schedule and watches; report.py prints the tables and draws the PNG timeline.
"""
