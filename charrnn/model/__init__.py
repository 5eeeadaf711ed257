"""The network (a pure `nn.Module`) and its fast one-character inference step."""
