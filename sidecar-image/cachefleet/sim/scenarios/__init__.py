"""One module per question the simulator answers; each is a pure function of the inputs."""
