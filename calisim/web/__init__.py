"""`calisim web`: a running lab's live page (server.py: aiohttp routes and server-sent events;
feed.py: the lab followed through its control socket; view.py: what the page draws, laid out as
`calisim graph` lays it out; probe.py: a probe stream between two workloads; static/: the page and
the vendored cytoscape.js)."""
