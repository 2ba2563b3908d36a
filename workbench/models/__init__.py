"""One module per architecture, each readable top to bottom like its paper."""
