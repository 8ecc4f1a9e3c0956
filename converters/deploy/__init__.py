"""What every export target shares: the facts the rules look at, the rule engine and the rules every target's table
starts with, the Target declaration, and the firmware plumbing (the model as the firmware sees it, its input
port, the comparison, the first diverging layer)."""
