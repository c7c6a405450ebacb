"""The control plane: baseline agent safety and the emergency plane, each part a mechanism
(kernel/mechanism.py): the overseers' levers, emergency controls and governance, incentive
policy, roles and clearances, compartments and bridges, and decision traces."""
