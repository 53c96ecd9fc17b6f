"""Build ``aura_stream/assets/utility/aura_cloze.jsonl``: the shipped zero-shot cloze task.

Each line of ``SENTENCES`` is one everyday sentence written for this project (no outside
text), split at ``|`` into a context and its ending. An item asks the model to pick the true
ending among four: the sentence's own and the endings of three other sentences, drawn with a
fixed seed, in a shuffled order. Deterministic: running it again writes the same bytes.

Run ``python scripts/build_utility_task.py`` from the repository root.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "aura_stream" / "assets" / "utility" / "aura_cloze.jsonl"
SEED = 19

SENTENCES = """\
She opened the umbrella because it | was starting to rain.
He put the milk back in the | fridge to keep it cold.
The children built a snowman in the | garden after breakfast.
We bought fresh bread at the | bakery on the corner.
The cat climbed up the tree and | could not get down again.
My phone battery was empty, so I | plugged in the charger.
The library closes at six, so we | returned the books early.
He brushed his teeth before going to | bed last night.
The baby was tired and fell | asleep in her mother's arms.
They planted tomatoes and beans in the | vegetable patch.
I boiled some water to make a | cup of tea.
The train was late because of | snow on the tracks.
She wore a warm coat because the | wind was very cold.
The dog wagged its tail when it | saw its owner.
We lit a fire in the fireplace to | warm up the room.
The students listened carefully while the | teacher explained the lesson.
He fixed the flat tyre on his | bicycle before the ride.
The farmer milked the cows early in the | morning.
She watered the flowers so they would not | dry out.
The shop was closed on Sunday, so we | came back on Monday.
After the long walk, my feet | were sore and tired.
He turned on the lamp because the room was | too dark to read.
The soup was too hot, so she | waited for it to cool.
They packed their suitcases the night before the | holiday.
The pilot told the passengers to fasten their | seat belts.
A strong wind blew the leaves off the | trees.
I set my alarm clock so I would | wake up on time.
The river froze during the | coldest week of winter.
She washed the dishes after | dinner.
The bird built a nest out of | twigs and grass.
He wrote the date at the top of the | page.
We waited at the bus stop until the | bus arrived.
The ice cream melted quickly in the | hot sun.
The doctor listened to my heart with a | stethoscope.
The baker woke up early to | bake the bread.
The old bridge was closed because it was | no longer safe.
She paid for the groceries with her | credit card.
He sharpened his pencil before the | exam began.
The museum has a large collection of | old paintings.
We swam in the lake until the | sun went down.
The kettle whistled when the water | started to boil.
The lights went out during the | storm last night.
He forgot his keys, so he could not | open the door.
The kitten drank a small bowl of | milk.
The mechanic repaired the engine of the | old car.
She put on her glasses to | read the small print.
The football match was cancelled because of the | heavy rain.
I need a ladder to reach the | top shelf.
The plants grew tall because they got plenty of | sunlight.
The waiter brought us the menu and a | jug of water.
He saved money every month to buy a | new bicycle.
The moon was bright and the sky was | full of stars.
She tied her shoelaces so she would not | trip over them.
The fisherman caught three fish with his | rod.
We used a map to find our | way through the city.
The bees collected nectar from the | flowers.
He wiped the table with a | damp cloth.
The clock on the wall showed that it was | almost noon.
The runners crossed the finish line and | caught their breath.
She cut the cake into eight | equal pieces.
The glass fell on the floor and | broke into pieces.
He hung his wet clothes outside to | dry in the sun.
The bus driver stopped to let the | passengers get off.
The carpenter used a saw to cut the | wooden plank.
The rooster crowed when the | sun came up.
I locked the door before I | left the house.
The hikers reached the top of the | mountain at noon.
She added sugar to her coffee because it was | too bitter.
The boat sailed slowly across the | calm sea.
He wrapped the present in | colourful paper.
The snow was so deep that we | could not drive.
The nurse gave the patient a glass of | water.
They cheered loudly when their team | scored a goal.
The apples were ripe, so we | picked them from the tree.
She turned down the music so the baby | could sleep.
The oven was hot enough to | bake the pizza.
The teacher wrote the answer on the | blackboard.
He took an umbrella in case it | rained later.
The shoes were too small, so she | bought a bigger pair.
The frog jumped from the leaf into the | pond.
We cleaned the house before the | guests arrived.
The painter mixed blue and yellow to make | green.
The horse drank water from the | trough.
He ran to the station but the train had | already left.
She counted the coins in her | purse.
The wind turned the blades of the | windmill.
The window was open, so a fly | came into the kitchen.
They sat around the campfire and | told stories.
My grandmother knits warm socks for the | winter.
The postman delivered a letter to our | house.
The toast was burnt because I left it in the | toaster too long.
The squirrel hid its nuts under the | roots of the tree.
He put a stamp on the envelope and | posted it.
The girl blew out the candles on her | birthday cake.
The road was icy, so the cars | drove slowly.
The cook tasted the sauce and added a | pinch of salt.
The orchestra played while the audience | listened quietly.
I wore sunglasses because the sun was | very bright.
The sheep grazed on the green | hillside.
She wrote a shopping list so she would not | forget anything.
The printer ran out of paper in the | middle of the report.
He climbed the stairs to the | top floor.
The tourists took photos of the | famous tower.
The cat slept on the warm | windowsill.
We ate our sandwiches on a bench in the | park.
The car needed fuel, so we stopped at a | petrol station.
She hung a picture on the | living room wall.
The plumber fixed the leak under the | kitchen sink.
The little boy held his father's hand while they | crossed the street.
The leaves turn red and yellow in | autumn.
He poured cereal into a bowl and added | cold milk.
The audience clapped when the singer | finished her song.
The owl hunts for mice during the | night.
We measured the room to see if the | sofa would fit.
She watered the garden with a | hose.
The ship's captain looked at the horizon through a | telescope.
The cookies smelled delicious as they | came out of the oven.
He put on a helmet before riding his | motorbike.
The children played on the swings at the | playground.
The wet towel was hung on a hook to | dry.
"""


def items() -> list[dict[str, object]]:
    """The task's documents: ``{"id", "context", "choices" (4 endings), "label"}``."""
    pairs = [tuple(part.strip() for part in line.split("|")) for line in SENTENCES.splitlines() if line.strip()]
    assert all(len(p) == 2 and p[0] and p[1] for p in pairs), "every line needs one `|`"
    endings = [e for _, e in pairs]
    assert len(set(endings)) == len(endings), "endings must be distinct"
    rng = random.Random(SEED)
    out: list[dict[str, object]] = []
    for i, (context, ending) in enumerate(pairs):
        others = rng.sample([j for j in range(len(pairs)) if j != i], 3)
        choices = [ending, *(endings[j] for j in others)]
        rng.shuffle(choices)
        out.append({"id": i, "context": context, "choices": choices, "label": choices.index(ending)})
    return out


def main() -> None:
    rows = items()
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    OUT.write_text(text, encoding="utf-8")
    print(f"{OUT}: {len(rows)} items, sha256 {hashlib.sha256(text.encode()).hexdigest()}")


if __name__ == "__main__":
    main()
