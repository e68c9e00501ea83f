"""The application: the ``apt-energy`` command line and what wires the stages into a running pipeline
(demo, pipeline supervisor, truth check, report, reset). Nothing below imports it."""
