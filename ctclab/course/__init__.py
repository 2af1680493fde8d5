"""The course as a learner takes it: the exercise workspace, self-checks, the course's questions."""
