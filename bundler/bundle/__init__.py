"""What the build machine and the server both know about a bundle tree: where everything is
(tree.py, layout.py), the records one side writes and the other reads (records.py), the generated
configs (render.py), relocation, checksums, archives and ELF files. Never imports build/ or
server/."""
