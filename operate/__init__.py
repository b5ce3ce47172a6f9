"""What an operator does to journeys in flight: list them, take users out, replay histories."""
