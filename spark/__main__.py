from apt_energy.cli import run_component

run_component("spark")
