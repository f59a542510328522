"""Exports of the collection to other dataset formats (LeRobot). Imports: envs, tasks.rlds."""
