"""A small corpus of typical image-generation prompts, written for this tool.

The tool-made CLIP-format tokenizer learns its BPE merges from this text, so that common prompt
words ("portrait", "lighting", "detailed", ...) become single tokens while everything else still
encodes through the 512 byte-level base tokens. Changing this text changes the vocabulary, the
tiny text encoders' vocab size and every fixture built from them: regenerate the fixtures after
editing it.
"""

PROMPT_CORPUS = """
a photo of a cat sitting on a windowsill, soft morning light, highly detailed
a portrait of an old fisherman with a grey beard, dramatic lighting, 85mm lens
a watercolor painting of a lighthouse on a rocky coast at sunset
a futuristic city skyline at night, neon lights, rain, cinematic, cyberpunk
an astronaut riding a horse on the moon, digital art, trending on artstation
a cozy cabin in a snowy forest, warm light in the windows, winter evening
a bowl of ramen with a soft boiled egg, food photography, shallow depth of field
a dragon flying over a medieval castle, epic fantasy landscape, matte painting
a close up photo of a dew covered spider web in the morning, macro photography
a golden retriever puppy playing in the grass, sunny day, bokeh background
an oil painting of a vase of sunflowers in the style of van gogh
a minimalist poster of a mountain range, flat colors, vector illustration
a steampunk robot reading a book in a library, intricate details, brass and copper
a beautiful woman with red hair wearing a green dress, studio portrait, soft light
a man in a black suit standing in the rain, film noir, black and white photo
a sailing ship on a stormy sea, huge waves, dramatic clouds, oil on canvas
a bustling street market in marrakech, colorful spices, warm afternoon light
a japanese garden with a red bridge and a koi pond, cherry blossoms, spring
a still life of fruit on a wooden table, apples, pears and grapes, realistic painting
a fox in a snowy forest, wildlife photography, national geographic, sharp focus
a low poly illustration of a desert with cacti and a pink sky
an isometric view of a tiny island with a house and a tree, 3d render, blender
a pencil sketch of a young girl reading, detailed shading, white paper
a cup of coffee on a wooden table next to a laptop, morning light, cozy
a colorful parrot sitting on a branch in the rainforest, vivid colors, detailed feathers
an abandoned factory overgrown with plants, post apocalyptic, volumetric light
a knight in shining armor holding a sword, fantasy art, highly detailed, 4k
a portrait of a cyborg woman with glowing blue eyes, sci fi, concept art
a small village in the alps with wooden houses, green meadows, blue sky, summer
a waterfall in a lush green jungle, long exposure, ultra realistic photo
a cute cartoon character of a panda eating bamboo, sticker design, white background
a photo of a red sports car driving on a coastal road, motion blur, golden hour
a view of the earth from space, stars, the milky way, high resolution
an ancient temple in the jungle, ruins, mist, god rays, adventure
a wizard casting a spell with glowing hands, magic particles, dark background
a portrait of a smiling child with freckles, natural light, canon eos, 50mm
a field of lavender in provence at sunset, purple flowers, warm colors
a cup of tea with steam, rainy window in the background, moody atmosphere
a bowl of fresh salad with tomatoes and avocado, top view, food photo
an underwater scene with coral reef and tropical fish, sun rays through water
a snowy mountain peak at sunrise, alpenglow, landscape photography, wide angle
a black cat with yellow eyes in a dark room, mysterious, low key lighting
a vintage photo of a family in the 1950s, sepia tone, film grain
a modern living room interior with large windows, scandinavian design, plants
a skyscraper made of glass reflecting the clouds, architecture photography
a pixel art scene of a forest with a small cottage, 16 bit, retro game
a surreal landscape with floating islands and waterfalls, dreamlike, vibrant colors
a close up of a human eye with a galaxy in the iris, hyper detailed
a girl with an umbrella walking in the rain at night, city lights, reflections
a bear catching a salmon in a river, wildlife, action shot, splashing water
an anime style portrait of a boy with silver hair, studio ghibli, soft colors
a charcoal drawing of an old tree with twisted branches, dramatic contrast
a plate of sushi on a black slate, restaurant photo, professional lighting
a hot air balloon festival over a valley at dawn, many colorful balloons
a lion resting on a rock in the savanna, golden light, telephoto lens
a fantasy map of an island kingdom, parchment, hand drawn, ink
a glass of red wine on a table by the fireplace, warm and cozy, evening
a robot and a little girl holding hands, watching the sunset, heartwarming
a street in paris with cafes and flowers, impressionist painting, morning
a tiger walking through tall grass, jungle, intense eyes, sharp details
a portrait of a queen wearing a golden crown, renaissance painting, oil
a cat wearing a wizard hat, funny, digital painting, highly detailed
a futuristic car in a white studio, product photo, clean background, 8k
a frozen lake with mountains in the background, clear sky, reflections
a beautiful garden full of roses and tulips, soft focus, spring morning
a shiba inu wearing sunglasses on the beach, summer vibes, photo
a gothic cathedral interior with stained glass windows, light beams
an owl sitting on a branch at night under the full moon, illustration
a bowl of strawberries and cream, close up, fresh, bright colors
a cyberpunk girl with a neon jacket, rain, reflections, night street
a portrait photo of a man with tattoos, studio lighting, dark background
a medieval village market with people and horses, detailed illustration
a magical forest with glowing mushrooms and fireflies, fantasy, night
a photo of a bicycle leaning against a brick wall, urban, afternoon
a giant whale swimming in the clouds, surreal art, soft pastel colors
a desert landscape with sand dunes and a camel caravan, sunset, warm tones
a hamburger with cheese and fries, advertising photo, studio light
a young woman in a flower crown, portrait, bokeh, spring, pastel colors
a spaceship landing on an alien planet, science fiction, matte painting
a small boat on a calm lake in the morning fog, peaceful, minimal
a detailed pencil drawing of a horse running, dynamic pose
a cozy bedroom with fairy lights and books, night, warm atmosphere
a portrait of an elderly woman smiling, wrinkles, natural light, documentary
a mountain road with autumn trees, orange and red leaves, aerial view
a tropical beach with palm trees and turquoise water, paradise, summer
a samurai standing in a bamboo forest, cinematic, misty, ukiyo e style
a cute baby elephant playing with water, wildlife photo, africa
a neon sign that says open in a dark alley, rain, moody
a chocolate cake with raspberries on a white plate, food photography
a fantasy elf archer in a forest, long hair, detailed armor, concept art
a train crossing a bridge over a canyon, landscape, dramatic sky
a portrait of a dog wearing a knitted scarf, autumn, cozy, photo
a city street in tokyo at night, crowds, neon signs, rain, reflections
a painting of a ballerina dancing on a stage, soft light, impressionism
a lighthouse beam in a storm at night, crashing waves, dramatic
a snowman in a garden with children playing, christmas, warm lights
a portrait of a viking warrior with braided beard, fur cloak, epic
a sunflower field under a blue sky with white clouds, summer, bright
a colorful hot air balloon over the desert at sunrise, photo
a wooden bridge over a stream in an autumn forest, peaceful, detailed
best quality, masterpiece, ultra detailed, sharp focus, high resolution
blurry, low quality, worst quality, jpeg artifacts, watermark, text, ugly
deformed, bad anatomy, extra fingers, cropped, out of frame, duplicate
photorealistic, octane render, unreal engine, ray tracing, global illumination
studio lighting, rim light, soft shadows, volumetric fog, cinematic composition
"""
