"""The HTML report of a run (`page`) and the comparison of runs (`compare`)."""
