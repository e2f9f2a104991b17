"""The server's side: what runs inside every bundle (bin/start, bin/stop, bin/bundler, the
monitor) with the bundle's own interpreter. Never imports build/: a bundle carries this code, not
the build machinery."""
