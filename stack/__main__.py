from apt_energy.app.cli import run_component

run_component("stack")
