"""Controllers on the piano task: the phrase fingering DP (`fingering`), mink IK (`ik`), the OT-IK
nominal controller (`nominal/`) and the residual env around it (`residual`). Imports: envs only."""
