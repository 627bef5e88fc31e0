"""Offline planning on workloads: policy tuning (tune) and capacity planning (capacity)."""
