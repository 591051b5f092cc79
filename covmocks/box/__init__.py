"""One box: its specification (BoxSpec), the populate-and-write loop, I/O overlap, and the MPI box
with its coordination."""
