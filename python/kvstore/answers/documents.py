"""The benchmark's prose documents: short made-up pages of facts (names, dates, numbers), each
with questions whose answers are in the text. The first question is the one a cache is
compressed for; the others are new questions about the same page (its prefix reused). Each
page fits one 14 x 14 span (196 tokens of SmolLM2's tokenizer) with room to spare."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    name: str
    text: str
    questions: tuple[str, ...]


DOCUMENTS = (
    Document("bridge", (
        "The Harlow Bridge crosses the river Wend at the town of Marsby. Work on it began in 1871 under the "
        "engineer Edith Crane and it opened to traffic on 4 May 1874. It has five stone arches and is 212 metres "
        "long. A flood in March 1903 carried away the second arch, which was rebuilt in iron by 1905. Tolls were "
        "charged until 1921, when the county bought the bridge for 18,000 pounds. Since 1988 only pedestrians and "
        "cyclists may use it; cars take the new Wend Crossing two kilometres upstream."),
        ("When did the Harlow Bridge open to traffic?", "Who was the engineer of the Harlow Bridge?",
         "How much did the county pay for the bridge?")),
    Document("orchard", (
        "Report of the Fenwick Orchard, season 2024. The orchard has 640 trees on 11 hectares: 410 apple, 150 pear "
        "and 80 plum. The apple harvest started on 2 September and ended on 19 October, with 96 tonnes picked, "
        "the best year since 2017. Pears gave 21 tonnes and plums 6 tonnes. A late frost on 14 April damaged the "
        "plum blossom. The orchard employed 23 seasonal pickers, led by the foreman Tomas Ribeiro. Most apples "
        "were sold to the cider maker Bellows and Sons at 310 pounds a tonne."),
        ("How many tonnes of apples were picked?", "Who led the seasonal pickers?",
         "On what date was the late frost?")),
    Document("expedition", (
        "In 1932 the Norwegian geologist Ingrid Solberg led an expedition of seven people to the Kessel Glacier. "
        "They left the port of Tromso on 12 June aboard the ship Polarlys and reached the glacier after nine days. "
        "Solberg measured the glacier's front at 3.4 kilometres wide and found that it had retreated 180 metres "
        "since a survey in 1898. The team's doctor, Aksel Brun, kept a diary that was published in 1935 under the "
        "title Ice and Silence. The expedition returned on 28 August without losing anyone."),
        ("How far had the glacier retreated since 1898?", "What was the name of the ship?",
         "Who kept a diary during the expedition?")),
    Document("library", (
        "The Corran Public Library opened in 1896 with 4,000 books given by the mill owner Samuel Pike. The present "
        "building, designed by the architect Lena Vos, was finished in 1931 and has a reading room for 120 people. "
        "Today the library holds 87,000 books and 2,300 maps, and lends about 150,000 items a year. It is open "
        "from 9 in the morning to 7 in the evening, except on Sundays. The head librarian since 2015 has been "
        "Martin Okafor. A new children's wing is planned to open in spring 2027."),
        ("Who designed the present library building?", "How many books does the library hold today?",
         "When did the Corran Public Library open?")),
    Document("recipe", (
        "Grandmother Alma's plum cake serves eight. Heat the oven to 180 degrees. Beat 200 grams of butter with "
        "150 grams of brown sugar until pale, then add three eggs one at a time. Fold in 250 grams of flour, two "
        "teaspoons of baking powder and a pinch of cinnamon. Spread the batter in a 24 centimetre tin and press "
        "twelve halved plums into the top, cut side up. Bake for 45 minutes, until a skewer comes out clean. "
        "Alma always served it warm with whipped cream on Sunday afternoons."),
        ("How long should the cake bake?", "How many eggs does the cake need?",
         "What temperature should the oven be?")),
    Document("election", (
        "Results of the Tarrow council election held on 6 November 2025. Turnout was 58 percent of 41,200 "
        "registered voters. The Green Valley party won 14 of the 31 seats, the Civic Union 11, and independents "
        "the remaining 6. Rosa Lindqvist of Green Valley received the most votes of any candidate, 3,912, and was "
        "chosen as mayor on 20 November. The previous mayor, Henrik Dahl, did not stand again after twelve years "
        "in office. The next election is due in November 2029."),
        ("How many seats did the Green Valley party win?", "Who was chosen as mayor?",
         "What was the turnout of the election?")),
    Document("lighthouse", (
        "The lighthouse on Skerry Point was built in 1858 and is 31 metres tall. Its light can be seen from 22 "
        "nautical miles and flashes white twice every ten seconds. The first keeper, Robert Lyall, served for 34 "
        "years; his daughter Jean took over after his death in 1892. The light was converted from oil to "
        "electricity in 1927 and has run without a keeper since 1986. The old keeper's cottage is now a small "
        "museum, open from April to October, that receives about 9,000 visitors a year."),
        ("How tall is the lighthouse?", "Who was the first keeper of the lighthouse?",
         "In what year was the light converted to electricity?")),
    Document("comet", (
        "Comet Halvorsen-Mbeki was discovered on 3 January 2019 by two amateur astronomers, Per Halvorsen in "
        "Norway and Grace Mbeki in South Africa, on the same night. It orbits the Sun once every 71 years and "
        "came closest to Earth on 17 March 2019, at a distance of 64 million kilometres. Its nucleus is about 5 "
        "kilometres across. At its brightest the comet reached magnitude 4.2 and could be seen without a "
        "telescope from dark places. It will next return in the year 2090."),
        ("How often does the comet orbit the Sun?", "When was the comet discovered?",
         "How wide is the comet's nucleus?")),
)
